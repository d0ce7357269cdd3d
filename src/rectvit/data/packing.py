"""Online bin packing of images into steps of equal token budgets, from a bounded pool.

Items ``(key, tokens)`` arrive in order (shuffled upstream) and wait in a pool of at most
``buffer`` items. A step is ``bins`` bins (one per rank) of ``capacity`` tokens each. To fill a
step, the packer repeatedly puts the oldest pooled item that fits into the emptiest bin and
refills the pool from the input; a step is closed when no pooled item fits the emptiest bin. So a
closed step's bins differ by less than the smallest image left in the pool, and while the pool
holds small images, every bin is nearly full.

Why not largest first (first-fit decreasing)? Both close a bin only when nothing pooled fits, so
they fill alike, but largest-first spends an epoch's long images first and keeps its short ones
for last: on text lines of 32-512 tokens in bins of 4096 whose label (the word count) grows with
the length, the first ten steps of an epoch held images 34% larger than the mean and the last five
60% smaller, which skews whole stretches of training (docs/training.md). Oldest-first keeps every
stretch of steps a sample of the shuffled order. Its cost: short images are not hoarded, so the
last one or two steps of an epoch, packed from the draining pool, can be a few percent short.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import RectViTError

__all__ = ["Step", "pack_steps", "top_up"]

_EMPTY = np.iinfo(np.int64).max  # the tokens of an empty slot: never fits


@dataclass(frozen=True)
class Step:
    """One step: ``bins[r]`` the keys for rank ``r`` (input order), ``loads[r]`` their tokens.

    ``closed``: no remaining item fitted any bin (false only for a step that emptied the input).
    """

    bins: tuple[tuple[Any, ...], ...]
    loads: tuple[int, ...]
    closed: bool


class _Pool:
    """Pending items in ``size`` slots; the oldest that fits a room is found by one vectorised scan."""

    def __init__(self, size: int) -> None:
        self.tokens = np.full(size, _EMPTY, dtype=np.int64)
        self.arrival = np.zeros(size, dtype=np.int64)
        self.keys: list[Any] = [None] * size
        self.free = list(range(size - 1, -1, -1))
        self.arrived = 0

    def __len__(self) -> int:
        return len(self.keys) - len(self.free)

    def add(self, key: Any, tokens: int) -> None:
        slot = self.free.pop()
        self.tokens[slot], self.arrival[slot], self.keys[slot] = tokens, self.arrived, key
        self.arrived += 1

    def _take(self, slot: int) -> tuple[int, Any, int]:
        out = (int(self.arrival[slot]), self.keys[slot], int(self.tokens[slot]))
        self.tokens[slot], self.keys[slot] = _EMPTY, None
        self.free.append(slot)
        return out

    def take_oldest(self, room: int) -> tuple[int, Any, int] | None:
        """Remove and return ``(arrival, key, tokens)`` of the oldest item with ``tokens <= room``."""
        fits = self.tokens <= room
        if not fits.any():
            return None
        return self._take(int(np.where(fits, self.arrival, _EMPTY).argmin()))

    def take_smallest(self) -> tuple[int, Any, int] | None:
        """Remove and return the item with the fewest tokens (the oldest of equals)."""
        return self._take(int(np.lexsort((self.arrival, self.tokens))[0])) if len(self) else None

    def smallest(self) -> int:
        return int(self.tokens.min())


class _Feed:
    """A pool kept at ``buffer`` items from an iterator of ``(key, tokens)``."""

    def __init__(self, items: Iterable[tuple[Any, int]], buffer: int) -> None:
        self.source, self.buffer, self.pool = iter(items), buffer, _Pool(buffer)
        self.refill()

    def refill(self) -> None:
        while len(self.pool) < self.buffer:
            nxt = next(self.source, None)
            if nxt is None:
                return
            self.pool.add(*nxt)


def _fill(feed: _Feed, loads: list[int], capacity: int) -> list[list[tuple[int, Any]]]:
    """Put the oldest pooled item that fits into the emptiest bin until none fits; ``(arrival, key)`` per bin."""
    chosen: list[list[tuple[int, Any]]] = [[] for _ in loads]
    heap = [(load, r) for r, load in enumerate(loads)]
    heapq.heapify(heap)
    while True:
        load, r = heap[0]
        got = feed.pool.take_oldest(capacity - load)
        if got is None:
            return chosen
        arrival, key, tokens = got
        chosen[r].append((arrival, key))
        loads[r] += tokens
        heapq.heapreplace(heap, (loads[r], r))
        feed.refill()


def pack_steps(items: Iterable[tuple[Any, int]], capacity: int, bins: int = 1, buffer: int = 1024) -> Iterator[Step]:
    """Steps of ``bins`` bins of ``capacity`` tokens from ``(key, tokens)`` items, through a pool of ``buffer``.

    Every item lands in exactly one step (items must have ``1 <= tokens <= capacity``). Keys within
    a bin are in input order. Lazy: it reads ``items`` only as far as the pool needs.
    """
    feed = _Feed(items, buffer)
    while len(feed.pool):
        loads = [0] * bins
        chosen = _fill(feed, loads, capacity)
        if not any(loads):
            raise RectViTError(
                f"an item of {feed.pool.smallest()} tokens does not fit a bin of {capacity}; resize it to the "
                "budget (rectvit.data.ResizeToBudget) or raise the budget."
            )
        yield Step(tuple(tuple(k for _, k in sorted(c, key=_first)) for c in chosen), tuple(loads), len(feed.pool) > 0)


def top_up(step: Step, repeats: Iterable[tuple[Any, int]], buffer: int = 1024) -> Step:
    """``step`` with its lighter bins filled from ``repeats`` up to the load of its heaviest bin.

    For the last step of an epoch, which ran out of items: the same rule as ``pack_steps`` with the
    heaviest bin's load as the capacity, so the ranks stay balanced; a bin still empty (every repeat
    heavier than that) gets the smallest repeat. Repeated keys follow the bin's own keys.
    """
    feed = _Feed(repeats, buffer)
    loads = list(step.loads)
    extra = _fill(feed, loads, max(loads))
    for r, load in enumerate(loads):
        if load == 0 and (got := feed.pool.take_smallest()) is not None:
            extra[r].append(got[:2])
            loads[r] += got[2]
            feed.refill()
    bins = tuple(own + tuple(k for _, k in sorted(more, key=_first)) for own, more in zip(step.bins, extra))
    return Step(bins, tuple(loads), step.closed)


def _first(pair: tuple[int, Any]) -> int:
    return pair[0]
