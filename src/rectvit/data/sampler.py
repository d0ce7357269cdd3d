"""``TokenBudgetBatchSampler``: batches of images under a token budget, planned globally, split over ranks.

Every rank builds the same plan from the same sizes and seed (no communication): the epoch's
shuffled indices go through ``packing.pack_steps`` with one bin per rank, and rank ``r`` takes bin
``r`` of every step. So all ranks run the same number of steps, and a step's bins differ by less
than the smallest image still pooled (docs/training.md states the balance measured).
"""

from __future__ import annotations

import itertools
import math
import numbers
import zlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Sampler

from ..errors import RectViTError
from ..grid import to_size
from .budget import image_tokens
from .checks import count, world
from .packing import Step, pack_steps, top_up

__all__ = ["TokenBudgetBatchSampler", "ImageIndex", "kept_patches"]

DropRate = float | Callable[[np.random.Generator], float]


def kept_patches(patches: int, drop_rate: float) -> int:
    """Patch tokens kept when ``drop_rate`` of ``patches`` are dropped: ``patches - floor(rate * patches)``, >= 1."""
    return max(1, patches - math.floor(drop_rate * patches))


class ImageIndex(int):
    """A dataset index that also carries the image's token-dropping plan: ``drop_rate`` and ``keep``
    (patch tokens to keep, ``kept_patches``). Indexes like the int it is."""

    drop_rate: float
    keep: int

    def __new__(cls, index: int, drop_rate: float, keep: int) -> ImageIndex:
        obj = super().__new__(cls, index)
        obj.drop_rate, obj.keep = drop_rate, keep
        return obj

    def __reduce__(self):
        return (ImageIndex, (int(self), self.drop_rate, self.keep))

    def __repr__(self) -> str:
        return f"ImageIndex({int(self)}, drop_rate={self.drop_rate}, keep={self.keep})"


class TokenBudgetBatchSampler(Sampler[list[int]]):
    """Lists of dataset indices whose images hold at most ``max_tokens`` tokens, for ``DataLoader(batch_sampler=...)``.

    ``sizes``: the ``(H, W)`` of every image, known before decoding: a list, or any sequence that
    reads them on demand (``rectvit.data.ImageSizes(paths)`` reads image headers). ``resize``: the
    transform the dataset applies (``ResizeToBudget`` or anything with ``output_size``); tokens are
    counted on its output. An image makes ``num_prefix_tokens + (H // p_h) * (W // p_w)`` tokens.

    An epoch shuffles the indices (numpy, seeded by ``(seed, epoch)``; ``set_epoch`` as
    ``DistributedSampler``), streams them through a pool of ``buffer`` images (default: about four
    steps' worth, at least 256) and packs them into steps (``packing.pack_steps``: the oldest pooled
    image that fits goes into the emptiest rank's batch). Rank ``rank`` of ``num_replicas`` (default: the process
    group's) yields its batch of each step, so every rank yields the same number of batches. The last
    step ran out of images: with ``drop_last`` it is dropped (its images come back next epoch),
    otherwise, with several ranks, its lighter batches are topped up to the heaviest with images
    repeated from the epoch's start (as ``DistributedSampler`` pads with repeats).

    ``drop_rate`` (for token dropping): a rate, or a function of a ``numpy.random.Generator`` that
    draws each image's rate; batches then hold ``ImageIndex`` values carrying ``drop_rate`` and
    ``keep``, and tokens are counted with only the kept patches (``kept_patches``).

    ``len(sampler)`` is the number of batches the next iteration yields; ``state_dict(steps)`` /
    ``load_state_dict`` resume mid-epoch with the same remaining batches.
    """

    def __init__(
        self,
        sizes: Sequence[Any],
        *,
        max_tokens: int,
        patch_size,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        drop_last: bool = False,
        buffer: int | None = None,
        resize: Any = None,
        num_prefix_tokens: int = 0,
        drop_rate: DropRate | None = None,
    ):
        if not hasattr(sizes, "__len__") or not hasattr(sizes, "__getitem__"):
            raise RectViTError(
                f"sizes must be a sequence of (H, W), got {type(sizes).__name__}; pass a list, or "
                "rectvit.data.ImageSizes(paths) to read image headers on demand."
            )
        self.sizes = sizes
        self.max_tokens = count(max_tokens, "max_tokens")
        self.patch_size = to_size(patch_size, "patch_size")
        self.num_replicas, self.rank = world(num_replicas, rank)
        self.seed = count(seed, "seed", minimum=0)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.buffer = None if buffer is None else count(buffer, "buffer")
        if resize is not None and not callable(getattr(resize, "output_size", None)):
            raise RectViTError(
                f"resize must have output_size((H, W)) (e.g. rectvit.data.ResizeToBudget), got {type(resize).__name__}."
            )
        self.resize = resize
        self.num_prefix_tokens = count(num_prefix_tokens, "num_prefix_tokens", minimum=0)
        if drop_rate is not None and not callable(drop_rate):
            _check_rate(drop_rate, "drop_rate")
        self.drop_rate = drop_rate
        self.epoch = 0
        self._start = 0  # the step the next iteration starts at (a resume)
        self._position = 0  # steps of this epoch yielded so far
        self._patches: np.ndarray | None = None
        self._plan: tuple[int, list[Step], np.ndarray | None] | None = None

    # ---------------------------------------------------------------------------------------------
    # Planning

    def patches(self) -> np.ndarray:
        """Patch tokens of every image (after ``resize``), read once and kept; checked against the budget."""
        if self._patches is None:
            out = np.empty(len(self.sizes), dtype=np.int64)
            for i in range(len(out)):
                try:
                    out[i] = image_tokens(self.sizes[i], self.patch_size, self.resize)
                except RectViTError as e:
                    raise type(e)(f"sizes[{i}]: {e}") from None
            tokens = out + self.num_prefix_tokens
            big = int(np.argmax(tokens)) if len(out) else 0
            if len(out) and tokens[big] > self.max_tokens:
                raise RectViTError(
                    f"image {big} makes {int(tokens[big])} tokens, more than max_tokens={self.max_tokens}; pass "
                    f"resize=rectvit.data.ResizeToBudget(patch_size, max_tokens=...) (and use it in the dataset) or "
                    "raise max_tokens."
                )
            self._patches = out
        return self._patches

    def _rates(self, epoch: int) -> np.ndarray | None:
        if self.drop_rate is None:
            return None
        if not callable(self.drop_rate):
            return np.full(len(self.sizes), float(self.drop_rate))
        rng = np.random.default_rng([self.seed, epoch, 1])
        rates = np.array([float(self.drop_rate(rng)) for _ in range(len(self.sizes))])
        for i, r in enumerate(rates):
            _check_rate(r, f"drop_rate(rng) for image {i}")
        return rates

    def plan(self, epoch: int | None = None) -> list[Step]:
        """Every step of ``epoch`` (default: the current one), all ranks' batches; computed once per epoch."""
        epoch = self.epoch if epoch is None else epoch
        if self._plan is not None and self._plan[0] == epoch:
            return self._plan[1]
        patches = self.patches()
        rates = self._rates(epoch)
        kept = patches if rates is None else np.array([kept_patches(int(p), r) for p, r in zip(patches, rates)])
        tokens = (kept + self.num_prefix_tokens).tolist()
        n = len(tokens)
        order = np.random.default_rng([self.seed, epoch]).permutation(n).tolist() if self.shuffle else list(range(n))
        buffer = self.buffer
        if buffer is None:
            mean = sum(tokens) / n if n else 1
            buffer = max(256, math.ceil(4 * self.num_replicas * self.max_tokens / mean))
        steps = list(pack_steps(((i, tokens[i]) for i in order), self.max_tokens, self.num_replicas, buffer))
        if steps and not steps[-1].closed:
            if self.drop_last:
                steps.pop()
            elif self.num_replicas > 1:
                last = set().union(*steps[-1].bins)
                repeats = [i for i in order if i not in last] + [i for i in order if i in last]
                steps[-1] = top_up(steps[-1], ((i, tokens[i]) for i in itertools.cycle(repeats)), buffer)
        self._plan = (epoch, steps, rates)
        return steps

    # ---------------------------------------------------------------------------------------------
    # The Sampler protocol

    def set_epoch(self, epoch: int) -> None:
        """Plan batches for ``epoch`` (call before each epoch's iteration, as with ``DistributedSampler``)."""
        self.epoch, self._start, self._position = count(epoch, "epoch", minimum=0), 0, 0

    def __len__(self) -> int:
        return len(self.plan()) - self._start

    def __iter__(self) -> Iterator[list[int]]:
        steps = self.plan()
        rates = self._plan[2]
        start, self._start = self._start, 0
        patches = self.patches()
        for s in range(start, len(steps)):
            batch = list(steps[s].bins[self.rank])
            if rates is not None:
                batch = [ImageIndex(i, float(rates[i]), kept_patches(int(patches[i]), rates[i])) for i in batch]
            self._position = s + 1
            yield batch

    # ---------------------------------------------------------------------------------------------
    # Resuming

    def _fingerprint(self) -> int:
        """A checksum of what the plan depends on besides the seed and epoch."""
        config = (self.max_tokens, self.patch_size, self.num_replicas, self.shuffle, self.drop_last, self.buffer)
        return zlib.crc32(repr(config).encode() + self.patches().tobytes())

    def state_dict(self, steps: int | None = None) -> dict[str, int]:
        """Where this epoch stands: ``steps`` batches done (default: those this sampler has yielded).

        A ``DataLoader`` with workers draws batches ahead of the training loop: pass the number of
        steps the loop has finished.
        """
        steps = self._position if steps is None else count(steps, "steps", minimum=0)
        total = len(self.plan())
        if steps > total:
            raise RectViTError(f"steps must be at most {total} (this epoch's batches), got {steps}.")
        return {"seed": self.seed, "epoch": self.epoch, "steps": steps, "fingerprint": self._fingerprint()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume: the next iteration yields the batches of ``state['epoch']`` after ``state['steps']``."""
        missing = {"seed", "epoch", "steps", "fingerprint"} - set(state)
        if missing:
            raise RectViTError(f"state is missing {sorted(missing)}; pass what state_dict() returned.")
        if state["seed"] != self.seed or state["fingerprint"] != self._fingerprint():
            raise RectViTError(
                "state was saved by a sampler with another seed, sizes or configuration (max_tokens, patch_size, "
                "num_replicas, shuffle, drop_last, buffer); resuming would not reproduce its batches. Build the "
                "sampler as it was built."
            )
        epoch = count(state["epoch"], "state['epoch']", minimum=0)
        total = len(self.plan(epoch))
        steps = count(state["steps"], "state['steps']", minimum=0)
        if steps > total:
            raise RectViTError(f"state['steps'] must be at most {total} (epoch {epoch}'s batches), got {steps}.")
        self.set_epoch(epoch)
        self._start = self._position = steps


def _check_rate(rate, what: str) -> None:
    if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0.0 <= float(rate) < 1.0:
        raise RectViTError(f"{what} must be a number in [0, 1), got {rate!r}.")
