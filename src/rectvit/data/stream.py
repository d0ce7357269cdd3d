"""Token-budget packing over streamed shards (webdataset-style tar files or any iterable of samples).

Each epoch the shard list is shuffled (seeded by ``(seed, epoch)``, the same on every process) and
dealt out to the ``num_replicas * num_workers`` readers: shard ``j`` goes to reader
``j % (num_replicas * num_workers)``, reader ``rank * num_workers + worker``. Every reader packs its
own samples with ``packing.pack_steps`` (one bin, a pool of at most ``buffer`` undecoded samples),
then decodes a batch only when it is emitted. So each sample of the epoch is read, and yielded,
exactly once over all ranks and workers; the last batch of each reader holds what is left.
"""

from __future__ import annotations

import multiprocessing
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from ..errors import RectViTError
from ..grid import to_size
from .budget import image_tokens
from .checks import count, world
from .packing import pack_steps

__all__ = ["TokenBudgetStream", "tar_samples"]


def tar_samples(path) -> Iterator[dict[str, Any]]:
    """The samples of a webdataset-style tar shard: consecutive members ``KEY.EXT`` grouped by ``KEY``.

    Each sample is ``{"__key__": KEY, EXT: bytes, ...}`` (``KEY`` is the member name up to its
    first dot after the last slash; ``EXT`` the rest, e.g. ``"png"``, ``"cls"``).
    """
    sample: dict[str, Any] | None = None
    with tarfile.open(path, "r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            folder, _, name = member.name.rpartition("/")
            stem, dot, ext = name.partition(".")
            key = f"{folder}/{stem}" if folder else stem
            if sample is not None and sample["__key__"] != key:
                yield sample
                sample = None
            if sample is None:
                sample = {"__key__": key}
            sample[ext if dot else ""] = tar.extractfile(member).read()
    if sample is not None:
        yield sample


class TokenBudgetStream(IterableDataset):
    """Batches of streamed samples under a token budget: ``DataLoader(stream, batch_size=None, num_workers=...)``.

    ``shards``: shard names (paths, URLs); ``read(shard)`` yields its samples (``tar_samples`` for
    webdataset tars); ``size_of(sample)`` gives a sample's ``(H, W)`` without decoding it (e.g.
    ``lambda s: rectvit.data.image_size(s["png"])``). Tokens are counted as by
    ``TokenBudgetBatchSampler`` (``patch_size``, ``resize``, ``num_prefix_tokens``). Each emitted
    batch is ``collate([transform(sample) for sample in batch])`` (each step default: identity).

    ``set_epoch(epoch)`` reshuffles the shards; it is seen by workers started later and by
    persistent workers alike (a shared value). Readers get whole shards, so give at least
    ``num_replicas * num_workers`` shards; ranks may then run different numbers of steps (use
    ``TokenBudgetBatchSampler`` when every rank must run the same number, as DDP needs).
    """

    def __init__(
        self,
        shards: Sequence[Any],
        read: Callable[[Any], Iterable[Any]],
        size_of: Callable[[Any], Any],
        *,
        max_tokens: int,
        patch_size,
        resize: Any = None,
        num_prefix_tokens: int = 0,
        buffer: int = 1024,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        transform: Callable[[Any], Any] | None = None,
        collate: Callable[[list[Any]], Any] | None = None,
    ):
        super().__init__()
        if isinstance(shards, (str, bytes)) or not isinstance(shards, Sequence) or len(shards) == 0:
            raise RectViTError(f"shards must be a non-empty list of shard names, got {shards!r}.")
        for name, fn in (("read", read), ("size_of", size_of), ("transform", transform), ("collate", collate)):
            if fn is not None and not callable(fn):
                raise RectViTError(f"{name} must be callable, got {type(fn).__name__}.")
        if read is None or size_of is None:
            raise RectViTError("read and size_of are required: read(shard) -> samples, size_of(sample) -> (H, W).")
        self.shards, self.read, self.size_of = list(shards), read, size_of
        self.max_tokens = count(max_tokens, "max_tokens")
        self.patch_size = to_size(patch_size, "patch_size")
        self.resize, self.num_prefix_tokens = resize, count(num_prefix_tokens, "num_prefix_tokens", minimum=0)
        self.buffer, self.seed, self.shuffle = count(buffer, "buffer"), count(seed, "seed", minimum=0), bool(shuffle)
        self.num_replicas, self.rank = world(num_replicas, rank)
        self.transform, self.collate = transform, collate
        self._epoch = multiprocessing.RawValue("q", 0)  # shared with workers, persistent ones included

    def set_epoch(self, epoch: int) -> None:
        self._epoch.value = count(epoch, "epoch", minimum=0)

    @property
    def epoch(self) -> int:
        return int(self._epoch.value)

    def reader_shards(self, worker: int = 0, num_workers: int = 1, epoch: int | None = None) -> list[Any]:
        """The shards reader ``(self.rank, worker)`` reads in ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        n = len(self.shards)
        order = np.random.default_rng([self.seed, epoch]).permutation(n).tolist() if self.shuffle else range(n)
        readers = self.num_replicas * num_workers
        me = self.rank * num_workers + worker
        return [self.shards[j] for pos, j in enumerate(order) if pos % readers == me]

    def _items(self, shards: list[Any]) -> Iterator[tuple[Any, int]]:
        for shard in shards:
            for i, sample in enumerate(self.read(shard)):
                try:
                    tokens = image_tokens(self.size_of(sample), self.patch_size, self.resize, self.num_prefix_tokens)
                except RectViTError as e:
                    raise type(e)(f"shard {shard!r}, sample {i}: {e}") from None
                if tokens > self.max_tokens:
                    raise RectViTError(
                        f"shard {shard!r}, sample {i}: {tokens} tokens, more than max_tokens={self.max_tokens}; "
                        "pass resize=rectvit.data.ResizeToBudget(...) (and use it in transform) or raise max_tokens."
                    )
                yield sample, tokens

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        items = self._items(self.reader_shards(worker, num_workers))
        for step in pack_steps(items, self.max_tokens, 1, self.buffer):
            batch = list(step.bins[0])
            if self.transform is not None:
                batch = [self.transform(s) for s in batch]
            yield batch if self.collate is None else self.collate(batch)
