"""Packed fine-tuning with TokenBudgetBatchSampler and global_mean under DDP and FSDP2 (fully_shard),
two gloo processes on 127.0.0.1, against one process training on the same global batches.

Acceptance: per-step losses and the weights after three SGD steps equal the single process's to
1e-5 (float32). The ranks' batches hold different numbers of images, so a per-rank mean (what
cross_entropy's default gives) would weigh images unequally: the test checks that it differs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

import rectvit

pytest.importorskip("torch.distributed.fsdp")

# two processes train once for the module; xdist_group keeps the module on one worker, so that happens once
pytestmark = [pytest.mark.xdist_group("fsdp"), pytest.mark.slow]

_COMMON = textwrap.dedent(
    """
    import torch, rectvit
    from rectvit.data import TokenBudgetBatchSampler

    def build():
        torch.manual_seed(0)
        model = rectvit.create_model(
            "vit_tiny_patch16_224", patch_size=8, num_classes=3, dynamic_img_size=True, depth=2, embed_dim=32,
            num_heads=2,
        )
        with torch.no_grad():
            for p in model.parameters():
                p.normal_(0.0, 0.1)
        return model.train()

    def data():
        g = torch.Generator().manual_seed(1)
        widths = torch.randint(1, 17, (40,), generator=g).tolist()
        images = [torch.randn(3, 16, 8 * k, generator=g) for k in widths]
        labels = torch.randint(0, 3, (40,), generator=g)
        return images, labels, [tuple(x.shape[-2:]) for x in images]

    STEPS = 3

    def sampler(sizes, rank):
        return TokenBudgetBatchSampler(
            sizes, max_tokens=96, patch_size=8, num_prefix_tokens=1, num_replicas=2, rank=rank, seed=3
        )
    """
)

_WORKER = _COMMON + textwrap.dedent(
    """
    import os, sys, datetime
    import torch.distributed as dist
    import torch.nn.functional as F
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import fully_shard
    from torch.nn.parallel import DistributedDataParallel as DDP
    from rectvit.data import global_mean

    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    dist.init_process_group(
        "gloo", rank=rank, world_size=2, init_method="tcp://127.0.0.1:" + os.environ["PORT"],
        timeout=datetime.timedelta(seconds=60),
    )
    images, labels, sizes = data()
    results = {}
    for mode in ("ddp", "fsdp"):
        model = build()
        if mode == "ddp":
            model = DDP(model)
        else:
            for block in model.blocks:
                fully_shard(block)
            fully_shard(model)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        losses, counts = [], []
        for _, batch in zip(range(STEPS), sampler(sizes, rank)):
            logits = model(rectvit.pack([images[i] for i in batch]))
            loss = global_mean(F.cross_entropy(logits, labels[batch], reduction="none"))
            opt.zero_grad()
            loss.backward()
            opt.step()
            logged = loss.detach().clone()
            dist.all_reduce(logged)
            losses.append(logged.item() / 2)
            counts.append(len(batch))
        if mode == "ddp":
            weights = model.module.state_dict()
        else:  # docs/training.md's FSDP2 recipe: a collective, every rank calls it
            weights = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
        results[mode] = {"losses": losses, "weights": weights, "counts": counts}
    if rank == 0:
        torch.save(results, sys.argv[1])
    dist.barrier()
    dist.destroy_process_group()
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def distributed(tmp_path_factory):
    """What the two gloo processes trained: ``{"ddp"|"fsdp": {"losses", "weights", "counts"}}``."""
    out = tmp_path_factory.mktemp("fsdp") / "results.pt"
    src = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")
    env = dict(os.environ, PORT=str(_free_port()), PYTHONPATH=src, OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(out)],
            env=dict(env, RANK=str(r)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for r in range(2)
    ]
    try:
        logs = [p.communicate(timeout=150)[0].decode() for p in procs]
    finally:
        for p in procs:
            p.kill()
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)
    return torch.load(out, weights_only=True)


def _common() -> dict:
    """The model and data builders the workers use, run here."""
    common: dict = {}
    exec(_COMMON, common)
    return common


def _single_process():
    """One process, one model: each step runs both ranks' batches together, loss = mean over all images."""
    common = _common()
    images, labels, sizes = common["data"]()
    plan = common["sampler"](sizes, 0).plan()[: common["STEPS"]]
    model = common["build"]()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses, per_rank_means = [], []
    for step in plan:
        batch = [i for bin_ in step.bins for i in bin_]
        per_image = F.cross_entropy(model(rectvit.pack([images[i] for i in batch])), labels[batch], reduction="none")
        split = per_image.split([len(b) for b in step.bins])
        per_rank_means.append(sum(s.mean() for s in split).item() / len(split))
        loss = per_image.mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return plan, losses, per_rank_means, {n: p.detach() for n, p in model.state_dict().items()}


@pytest.fixture(scope="module")
def reference():
    return _single_process()


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_two_processes_train_as_one(distributed, reference, mode):
    plan, losses, per_rank_means, weights = reference
    got = distributed[mode]
    assert got["counts"] == [len(step.bins[0]) for step in plan]
    assert any(len(step.bins[0]) != len(step.bins[1]) for step in plan)  # unequal image counts per rank
    assert max(abs(a - b) for a, b in zip(losses, per_rank_means)) > 1e-3  # a per-rank mean would differ
    assert got["losses"] == pytest.approx(losses, abs=1e-5)
    assert set(got["weights"]) == set(weights)
    for name, w in weights.items():
        assert (got["weights"][name] - w).abs().max().item() <= 1e-5, name
    fresh = _common()["build"]()
    fresh.load_state_dict(got["weights"])  # the gathered state dict loads into a plain model
    first = next(n for n, _ in fresh.named_parameters())
    assert (weights[first] - _common()["build"]().state_dict()[first]).abs().max() > 1e-3  # the weights moved
