"""TokenBudgetBatchSampler and the packer under it.

Oracles: a naive re-implementation of the packing rule (hypothesis, exact equality), token counts
recomputed from the sizes by hand, and the stated acceptance rules: every image once per epoch, no
batch over the budget, ranks in lock-step with per-step tokens within +-5%, padding <= 2% on every
step but an epoch's last two (packed from the draining pool), no size trend over the epoch,
deterministic in (seed, epoch), resuming yields the same remaining batches, bad input a
RectViTError that changes nothing."""

from __future__ import annotations

import pickle
import random
from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from rectvit import RectViTError
from rectvit.data import ImageIndex, ImageSizes, ResizeToBudget, TokenBudgetBatchSampler, kept_patches, pack_steps

PATCH = 8


def _lines(n=600, seed=0):
    """Text-line sizes: 32 high, 64-1024 wide (aspect 1:2 to 1:32): 32-512 tokens at patch 8."""
    rng = random.Random(seed)
    return [(32, rng.randint(64, 1024)) for _ in range(n)]


def _tokens(size, prefix=0):
    return prefix + (size[0] // PATCH) * (size[1] // PATCH)


def _epoch(sizes, ranks, **kw):
    """Every rank's batches of one epoch: ``out[r][step]``."""
    kw = dict(max_tokens=4096, patch_size=PATCH) | kw
    return [list(TokenBudgetBatchSampler(sizes, num_replicas=ranks, rank=r, **kw)) for r in range(ranks)]


# --------------------------------------------------------------------------------------------------
# The packing rule against a naive implementation: the oldest pooled item that fits the emptiest bin


def _naive_pack(items, capacity, bins, buffer):
    pool, pos, steps = [], 0, []

    def refill():
        nonlocal pos
        while len(pool) < buffer and pos < len(items):
            pool.append((pos, *items[pos]))
            pos += 1

    refill()
    while pool:
        loads, chosen = [0] * bins, [[] for _ in range(bins)]
        while True:
            r = min(range(bins), key=lambda b: (loads[b], b))
            fits = [e for e in pool if e[2] <= capacity - loads[r]]
            if not fits:
                break
            e = min(fits, key=lambda e: e[0])  # the oldest that fits
            pool.remove(e)
            chosen[r].append(e)
            loads[r] += e[2]
            refill()
        steps.append((tuple(tuple(k for _, k, _ in sorted(c)) for c in chosen), tuple(loads), bool(pool)))
    return steps


@settings(max_examples=120, deadline=None)
@given(
    st.integers(1, 50).flatmap(
        lambda cap: st.tuples(st.just(cap), st.lists(st.integers(1, cap), max_size=60), st.integers(1, 4))
    ),
    st.integers(1, 20),
)
def test_pack_steps_equals_the_naive_rule(case, buffer):
    capacity, tokens, bins = case
    items = [(f"k{i}", t) for i, t in enumerate(tokens)]
    steps = list(pack_steps(items, capacity, bins, buffer))
    assert [(s.bins, s.loads, s.closed) for s in steps] == _naive_pack(items, capacity, bins, buffer)
    placed = [k for s in steps for b in s.bins for k in b]
    assert sorted(placed) == sorted(k for k, _ in items)  # every item exactly once
    assert all(load <= capacity for s in steps for load in s.loads)
    assert all(s.closed for s in steps[:-1])


def test_pack_steps_refuses_an_item_over_capacity():
    with pytest.raises(RectViTError, match="does not fit"):
        list(pack_steps([("a", 3), ("b", 9)], 5))


# --------------------------------------------------------------------------------------------------
# One epoch: coverage, budget, lock-step, balance, padding


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_epoch_covers_every_image_under_the_budget_in_lock_step(ranks):
    sizes = _lines()
    batches = _epoch(sizes, ranks)
    steps = len(batches[0])
    assert all(len(b) == steps for b in batches)  # lock-step: the same number of steps on every rank
    seen = Counter(i for rank in batches for batch in rank for i in batch)
    assert set(seen) == set(range(len(sizes)))
    # repeats (only to balance the last step of several ranks) sit in the last step, at most once each
    last = Counter(i for rank in batches for i in rank[-1])
    assert all(seen[i] == 1 or (ranks > 1 and seen[i] == 2 and last[i] >= 1) for i in seen)
    loads = [[sum(_tokens(sizes[i]) for i in rank[s]) for rank in batches] for s in range(steps)]
    assert all(0 < load <= 4096 for step in loads for load in step)
    for s, step in enumerate(loads):
        assert max(step) <= 1.05 * min(step), (s, step)  # +-5% across ranks, every step
        if s < steps - 2:
            assert min(step) >= 0.98 * 4096, (s, step)  # padding <= 2% on every step but the last two


def test_len_is_exact_and_batches_are_deterministic_in_seed_and_epoch():
    sizes = _lines(400)
    a = TokenBudgetBatchSampler(sizes, max_tokens=2048, patch_size=PATCH, seed=3, num_replicas=2, rank=1)
    b = TokenBudgetBatchSampler(sizes, max_tokens=2048, patch_size=PATCH, seed=3, num_replicas=2, rank=1)
    first = list(a)
    assert len(a) == len(first) and first == list(b) == list(a)  # iterating again repeats the epoch
    a.set_epoch(1)
    second = list(a)
    assert second != first and len(a) == len(second)
    a.set_epoch(0)
    assert list(a) == first
    c = TokenBudgetBatchSampler(sizes, max_tokens=2048, patch_size=PATCH, seed=4, num_replicas=2, rank=1)
    assert list(c) != first
    ordered = TokenBudgetBatchSampler(sizes, max_tokens=2048, patch_size=PATCH, shuffle=False)
    ordered.set_epoch(5)
    plain = list(ordered)
    ordered.set_epoch(6)
    assert list(ordered) == plain  # without shuffling the epoch does not matter


def test_drop_last_drops_the_open_last_step():
    sizes = _lines(500)
    batches = _epoch(sizes, 2, drop_last=True)
    full = _epoch(sizes, 2)
    assert len(batches[0]) == len(full[0]) - 1 and batches[0] == full[0][:-1]
    seen = Counter(i for rank in batches for batch in rank for i in batch)
    assert max(seen.values()) == 1 and len(seen) < len(sizes)
    for s in range(len(batches[0]) - 1):
        assert min(sum(_tokens(sizes[i]) for i in rank[s]) for rank in batches) >= 0.98 * 4096


def test_fewer_images_than_ranks_still_gives_every_rank_a_batch():
    batches = _epoch([(32, 64)], 3, max_tokens=64)
    assert [len(b) for b in batches] == [1, 1, 1] and all(b[0] == [0] for b in batches)
    # three images of 32 tokens on two ranks: 64 against 32 tokens, until the lighter rank gets a repeat
    batches = _epoch([(32, 64)] * 3, 2, max_tokens=100, shuffle=False)
    assert [len(b) for b in batches] == [1, 1]
    assert sorted(len(b[0]) for b in batches) == [2, 2] and sorted(batches[0][0] + batches[1][0]) == [0, 0, 1, 2]


def test_prefix_tokens_and_resize_are_counted():
    sizes = [(32, 5000), (64, 64), (32, 800)] * 20
    resize = ResizeToBudget(PATCH, max_tokens=256)
    s = TokenBudgetBatchSampler(sizes, max_tokens=1024, patch_size=PATCH, resize=resize, num_prefix_tokens=1)
    for batch in s:
        load = sum(1 + _tokens(resize.output_size(sizes[i])) for i in batch)
        assert load <= 1024
    assert sorted(i for batch in s for i in batch) == list(range(len(sizes)))
    with pytest.raises(RectViTError, match="image 0 makes"):
        len(TokenBudgetBatchSampler(sizes, max_tokens=1024, patch_size=PATCH))


# --------------------------------------------------------------------------------------------------
# Resuming mid-epoch


@pytest.mark.parametrize("k", [0, 3, 7])
def test_resume_mid_epoch_reproduces_the_remaining_batches(k):
    sizes = _lines(500)

    def build():
        return TokenBudgetBatchSampler(sizes, max_tokens=2048, patch_size=PATCH, seed=1, num_replicas=2, rank=0)

    whole = build()
    whole.set_epoch(2)
    expected = list(whole)
    run = build()
    run.set_epoch(2)
    it = iter(run)
    for _ in range(k):
        next(it)
    state = run.state_dict()
    assert state["steps"] == k and state["epoch"] == 2
    resumed = build()
    resumed.load_state_dict(pickle.loads(pickle.dumps(state)))
    assert len(resumed) == len(expected) - k
    assert list(resumed) == expected[k:]
    assert list(resumed) == expected  # the resume applies once; the epoch then restarts whole
    # the step count a training loop reports instead of the sampler's own (DataLoader prefetch)
    explicit = build()
    explicit.load_state_dict(run.state_dict(steps=1))
    assert list(explicit) == expected[1:]


def test_resume_refuses_another_configuration_and_changes_nothing():
    sizes = _lines(300)
    a = TokenBudgetBatchSampler(sizes, max_tokens=2048, patch_size=PATCH)
    state = a.state_dict()
    for other in (
        TokenBudgetBatchSampler(sizes, max_tokens=1024, patch_size=PATCH),
        TokenBudgetBatchSampler(sizes[:-1], max_tokens=2048, patch_size=PATCH),
        TokenBudgetBatchSampler(sizes, max_tokens=2048, patch_size=PATCH, seed=1),
        TokenBudgetBatchSampler(sizes, max_tokens=2048, patch_size=PATCH, num_replicas=2, rank=0),
    ):
        other.set_epoch(4)
        before = list(other)
        with pytest.raises(RectViTError, match="resuming would not reproduce"):
            other.load_state_dict(state)
        assert other.epoch == 4 and list(other) == before
    with pytest.raises(RectViTError, match="at most"):
        a.load_state_dict(dict(state, steps=10**6))
    with pytest.raises(RectViTError, match="missing"):
        a.load_state_dict({"epoch": 0})
    with pytest.raises(RectViTError, match="at most"):
        a.state_dict(steps=10**6)
    assert list(a) == list(TokenBudgetBatchSampler(sizes, max_tokens=2048, patch_size=PATCH))


# --------------------------------------------------------------------------------------------------
# Drop rates for token dropping


def test_drop_rates_travel_with_the_indices_and_shrink_the_planned_tokens():
    sizes = _lines(300)
    const = TokenBudgetBatchSampler(sizes, max_tokens=4096, patch_size=PATCH, drop_rate=0.5)
    batches = list(const)
    assert all(isinstance(i, ImageIndex) and i.drop_rate == 0.5 for b in batches for i in b)
    for b in batches:
        assert sum(i.keep for i in b) <= 4096
        assert all(i.keep == _tokens(sizes[i]) - (_tokens(sizes[i]) // 2) for i in b)
    plain = list(TokenBudgetBatchSampler(sizes, max_tokens=4096, patch_size=PATCH))
    assert len(batches) < len(plain)  # fewer kept tokens per image: more images per step

    def draw(rng):
        return float(rng.uniform(0.0, 0.8))

    a = TokenBudgetBatchSampler(sizes, max_tokens=4096, patch_size=PATCH, drop_rate=draw, seed=2)
    b = TokenBudgetBatchSampler(sizes, max_tokens=4096, patch_size=PATCH, drop_rate=draw, seed=2)
    rates = {int(i): i.drop_rate for batch in a for i in batch}
    assert rates == {int(i): i.drop_rate for batch in b for i in batch}
    assert len(set(rates.values())) > 100 and all(0 <= r < 0.8 for r in rates.values())
    index = next(iter(a))[0]
    copy = pickle.loads(pickle.dumps(index))  # DataLoader workers receive indices pickled
    assert (int(copy), copy.drop_rate, copy.keep) == (int(index), index.drop_rate, index.keep)
    assert list(range(1000))[index] == int(index)
    assert kept_patches(10, 0.0) == 10 and kept_patches(10, 0.55) == 5 and kept_patches(1, 0.9) == 1
    with pytest.raises(RectViTError, match=r"drop_rate\(rng\) for image 0"):
        list(TokenBudgetBatchSampler(sizes, max_tokens=4096, patch_size=PATCH, drop_rate=lambda rng: 1.5))


# --------------------------------------------------------------------------------------------------
# In a DataLoader, with sizes read from image headers


def test_dataloader_with_sizes_read_lazily_from_headers(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = random.Random(0)
    wanted = [(rng.randint(16, 40), rng.randint(16, 300)) for _ in range(24)]
    paths = [tmp_path / f"{i}.png" for i in range(len(wanted))]
    sizes = ImageSizes(paths)
    sampler = TokenBudgetBatchSampler(sizes, max_tokens=512, patch_size=PATCH)  # no file exists yet
    for path, (h, w) in zip(paths, wanted):
        Image.new("L", (w, h), 255).save(path)
    assert list(sizes) == wanted and sizes[-1] == wanted[-1] and sizes[1:3] == wanted[1:3]

    class Files(torch.utils.data.Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            return i, tuple(torch.as_tensor(memoryview(Image.open(paths[i]).tobytes())).shape)

    loader = DataLoader(Files(), batch_sampler=sampler, collate_fn=list)
    got = [[i for i, _ in batch] for batch in loader]
    assert got == list(sampler) and len(loader) == len(got)
    assert sorted(i for b in got for i in b) == list(range(len(wanted)))


# --------------------------------------------------------------------------------------------------
# Bad arguments: a RectViTError naming the argument


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(sizes=iter([(32, 64)])), "sequence of"),
        (dict(max_tokens=0), "max_tokens"),
        (dict(patch_size=(8, 0)), "positive"),
        (dict(num_replicas=2, rank=2), "rank"),
        (dict(num_replicas=0, rank=0), "num_replicas"),
        (dict(rank=-1), "rank"),
        (dict(seed=-1), "seed"),
        (dict(buffer=0), "buffer"),
        (dict(resize=lambda x: x), "output_size"),
        (dict(num_prefix_tokens=-1), "num_prefix_tokens"),
        (dict(drop_rate=1.0), "drop_rate"),
        (dict(drop_rate="0.1"), "drop_rate"),
    ],
)
def test_bad_arguments(kwargs, fragment):
    args = dict(sizes=[(32, 64)], max_tokens=64, patch_size=PATCH) | kwargs
    with pytest.raises(RectViTError, match=fragment):
        TokenBudgetBatchSampler(args.pop("sizes"), **args)


@pytest.mark.parametrize(
    "sizes, fragment", [([(32, 64), (4, 64)], r"sizes\[1\].*smaller than one patch"), ([(32, 64), "x"], r"sizes\[1\]")]
)
def test_bad_sizes_name_the_index(sizes, fragment):
    sampler = TokenBudgetBatchSampler(sizes, max_tokens=64, patch_size=PATCH)
    with pytest.raises(RectViTError, match=fragment):
        list(sampler)
    with pytest.raises(RectViTError, match="epoch"):
        sampler.set_epoch(-1)


def test_ranks_default_to_the_process_group(monkeypatch):
    import torch.distributed as dist

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda group=None: 3)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 2)
    sizes = _lines(200)
    s = TokenBudgetBatchSampler(sizes, max_tokens=2048, patch_size=PATCH)
    assert (s.num_replicas, s.rank) == (3, 2)
    assert list(s) == list(TokenBudgetBatchSampler(sizes, max_tokens=2048, patch_size=PATCH, num_replicas=3, rank=2))
    with pytest.raises(RectViTError, match="rank must be in"):
        TokenBudgetBatchSampler(sizes, max_tokens=2048, patch_size=PATCH, rank=3)


def test_steps_sample_the_shuffled_order_without_a_size_trend():
    """Long and short images spread over the epoch: the first and last steps' mean image size stays
    within 15% of the epoch's (first-fit decreasing throughout puts the long ones first)."""
    sizes = _lines(3000, seed=4)
    tokens = [_tokens(s) for s in sizes]
    mean = sum(tokens) / len(tokens)
    steps = _epoch(sizes, 1)[0]

    def mean_of(batches):
        images = [i for b in batches for i in b]
        return sum(tokens[i] for i in images) / len(images)

    assert abs(mean_of(steps[:10]) / mean - 1) < 0.15
    assert abs(mean_of(steps[-5:]) / mean - 1) < 0.15
