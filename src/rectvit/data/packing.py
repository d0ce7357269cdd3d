"""Online bin packing of images into steps of equal token budgets, from a bounded pool.

Items ``(key, tokens)`` arrive in order (shuffled upstream) and wait in a pool of at most
``buffer`` items. A step is ``bins`` bins (one per rank) of ``capacity`` tokens each. To fill a
step, the packer repeatedly takes the largest pooled item that fits the emptiest bin, puts it
there, and refills the pool from the input; the step is closed when no pooled item fits the
emptiest bin. With one bin this is first-fit decreasing within the pool; with several, each image
goes to the emptiest bin, so a closed step's bins differ by less than the smallest image left in
the pool. Ties go to the earlier item, so the result depends on the input order only.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import RectViTError

__all__ = ["Step", "pack_steps", "top_up"]


@dataclass(frozen=True)
class Step:
    """One step: ``bins[r]`` the keys for rank ``r`` (input order), ``loads[r]`` their tokens.

    ``closed``: no remaining item fitted any bin (false only for a step that emptied the input).
    """

    bins: tuple[tuple[Any, ...], ...]
    loads: tuple[int, ...]
    closed: bool


class _Pool:
    """Pending items sorted by ``(tokens, -arrival)``: the largest fitting, earliest first, by bisection."""

    def __init__(self) -> None:
        self.entries: list[tuple[int, int]] = []  # (tokens, -arrival)
        self.keys: dict[int, Any] = {}
        self.arrived = 0

    def __len__(self) -> int:
        return len(self.entries)

    def add(self, key: Any, tokens: int) -> None:
        bisect.insort(self.entries, (tokens, -self.arrived))
        self.keys[self.arrived] = key
        self.arrived += 1

    def take_largest(self, room: int) -> tuple[int, Any, int] | None:
        """Remove and return ``(arrival, key, tokens)`` of the largest item ``<= room`` (earliest of equals)."""
        i = bisect.bisect_right(self.entries, (room, 1)) - 1
        if i < 0:
            return None
        tokens, neg = self.entries.pop(i)
        return -neg, self.keys.pop(-neg), tokens

    def take_smallest(self) -> tuple[int, Any, int] | None:
        if not self.entries:
            return None
        tokens, neg = self.entries.pop(0)
        return -neg, self.keys.pop(-neg), tokens


class _Feed:
    """A pool kept at ``buffer`` items from an iterator of ``(key, tokens)``."""

    def __init__(self, items: Iterable[tuple[Any, int]], buffer: int) -> None:
        self.source, self.buffer, self.pool = iter(items), buffer, _Pool()
        self.refill()

    def refill(self) -> None:
        while len(self.pool) < self.buffer:
            nxt = next(self.source, None)
            if nxt is None:
                return
            self.pool.add(*nxt)


def _fill(feed: _Feed, loads: list[int], capacity: int) -> list[list[tuple[int, Any]]]:
    """Put the largest pooled item that fits into the emptiest bin until none fits; ``(arrival, key)`` per bin."""
    chosen: list[list[tuple[int, Any]]] = [[] for _ in loads]
    heap = [(load, r) for r, load in enumerate(loads)]
    heapq.heapify(heap)
    while True:
        load, r = heap[0]
        got = feed.pool.take_largest(capacity - load)
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
                f"an item of {feed.pool.entries[0][0]} tokens does not fit a bin of {capacity}; resize it to the "
                "budget (rectvit.data.ResizeToBudget) or raise the budget."
            )
        yield Step(tuple(tuple(k for _, k in sorted(c)) for c in chosen), tuple(loads), len(feed.pool) > 0)


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
    bins = tuple(own + tuple(k for _, k in sorted(more)) for own, more in zip(step.bins, extra))
    return Step(bins, tuple(loads), step.closed)
