"""TokenBudgetStream over webdataset-style tar shards, split over 2 simulated ranks x 2 DataLoader workers.

Acceptance: over all ranks and workers every sample of an epoch is yielded exactly once, every batch
is within the budget (tokens recomputed from the image sizes written), the pool never holds more
than ``buffer`` undecoded samples, a new epoch reshuffles the shards (persistent workers see it)."""

from __future__ import annotations

import io
import random
import tarfile
from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader

from rectvit import RectViTError
from rectvit.data import ResizeToBudget, TokenBudgetStream, image_size, tar_samples

Image = pytest.importorskip("PIL.Image")

PATCH = 8


def _png(h: int, w: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (w, h), 200).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """8 tar shards of 12 samples each: KEY.png (a 16-40 x 16-400 image) and KEY.cls (its label)."""
    root = tmp_path_factory.mktemp("shards")
    rng = random.Random(0)
    paths, sizes = [], {}
    for s in range(8):
        path = root / f"shard-{s:02d}.tar"
        with tarfile.open(path, "w") as tar:
            for i in range(12):
                key = f"s{s}/{i:03d}"
                h, w = rng.randint(16, 40), rng.randint(16, 400)
                sizes[key] = (h, w)
                for ext, data in (("png", _png(h, w)), ("cls", str(i % 3).encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        paths.append(str(path))
    return paths, sizes


def _size_of(sample):
    return image_size(sample["png"])


def _decode(sample):
    img = Image.open(io.BytesIO(sample["png"]))
    return sample["__key__"], torch.as_tensor(memoryview(img.tobytes())).view(1, img.height, img.width)


def _stream(paths, rank, **kw):
    kw = dict(max_tokens=600, patch_size=PATCH, num_replicas=2, rank=rank, seed=5, transform=_decode) | kw
    return TokenBudgetStream(paths, tar_samples, _size_of, **kw)


def _tokens(size):
    return (size[0] // PATCH) * (size[1] // PATCH)


def test_tar_samples_groups_members_by_key(shards):
    paths, sizes = shards
    samples = list(tar_samples(paths[0]))
    assert [s["__key__"] for s in samples] == [f"s0/{i:03d}" for i in range(12)]
    assert all(set(s) == {"__key__", "png", "cls"} for s in samples)
    assert image_size(samples[3]["png"]) == sizes["s0/003"]


def test_two_ranks_two_workers_see_every_sample_once(shards):
    paths, sizes = shards
    seen = Counter()
    for epoch in (0, 1):
        assignment = []
        for rank in range(2):
            stream = _stream(paths, rank)
            stream.set_epoch(epoch)
            assignment.append([stream.reader_shards(w, 2) for w in range(2)])
            for batch in DataLoader(stream, batch_size=None, num_workers=2):
                assert sum(_tokens(img.shape[-2:]) for _, img in batch) <= 600
                for key, img in batch:
                    assert tuple(img.shape[-2:]) == sizes[key]
                    seen[(epoch, key)] += 1
        read = [s for rank in assignment for worker in rank for s in worker]
        assert sorted(read) == sorted(paths)  # each shard read by exactly one (rank, worker)
        assert all(len(worker) == 2 for rank in assignment for worker in rank)
        if epoch == 0:
            first = assignment
    assert first != assignment  # the epoch reshuffles the shards
    assert set(seen.values()) == {1} and len(seen) == 2 * len(sizes)


def test_persistent_workers_follow_set_epoch(shards):
    paths, _ = shards
    stream = _stream(paths, 0)
    loader = DataLoader(stream, batch_size=None, num_workers=2, persistent_workers=True)
    for epoch in (0, 1):
        stream.set_epoch(epoch)
        keys = {key.split("/")[0] for batch in loader for key, _ in batch}
        mine = {p.rsplit("-", 1)[1].split(".")[0] for w in range(2) for p in stream.reader_shards(w, 2)}
        assert keys == {f"s{int(s)}" for s in mine}


def test_the_pool_stays_bounded_and_decodes_only_emitted_batches(shards):
    paths, sizes = shards
    counts = {"read": 0, "decoded": 0}

    def read(path):
        for sample in tar_samples(path):
            counts["read"] += 1
            yield sample

    def decode(sample):
        counts["decoded"] += 1
        return sample["__key__"]

    stream = TokenBudgetStream(
        paths, read, _size_of, max_tokens=600, patch_size=PATCH, buffer=10, num_replicas=1, rank=0, transform=decode
    )
    total = 0
    for batch in stream:
        total += len(batch)
        assert counts["decoded"] == total
        assert counts["read"] - total <= 10  # at most `buffer` samples wait in the pool
        assert sum(_tokens(sizes[k]) for k in batch) <= 600
    assert total == len(sizes) == counts["read"]


def test_resize_collate_and_prefix_tokens(shards):
    paths, sizes = shards
    resize = ResizeToBudget(PATCH, max_tokens=20)
    stream = _stream(
        paths, 0, num_replicas=1, resize=resize, num_prefix_tokens=1, max_tokens=64, transform=None, collate=len
    )
    assert sum(stream) == len(sizes)  # collate=len: each batch is its size
    for batch in _stream(paths, 0, num_replicas=1, resize=resize, num_prefix_tokens=1, max_tokens=64, transform=None):
        assert sum(1 + _tokens(resize.output_size(sizes[s["__key__"]])) for s in batch) <= 64


def test_bad_arguments_and_oversized_samples(shards):
    paths, _ = shards
    with pytest.raises(RectViTError, match="non-empty list"):
        TokenBudgetStream([], tar_samples, _size_of, max_tokens=64, patch_size=8)
    with pytest.raises(RectViTError, match="non-empty list"):
        TokenBudgetStream("shard.tar", tar_samples, _size_of, max_tokens=64, patch_size=8)
    with pytest.raises(RectViTError, match="size_of must be callable"):
        TokenBudgetStream(paths, tar_samples, 3, max_tokens=64, patch_size=8)
    with pytest.raises(RectViTError, match="rank"):
        TokenBudgetStream(paths, tar_samples, _size_of, max_tokens=64, patch_size=8, num_replicas=2, rank=5)
    stream = TokenBudgetStream(paths, tar_samples, _size_of, max_tokens=8, patch_size=8, shuffle=False)
    with pytest.raises(RectViTError, match=r"shard .*shard-00.tar.*sample 0: \d+ tokens, more than max_tokens=8"):
        list(stream)
