"""The benchmark machinery runs end to end on tiny models and writes its markdown (nothing is timed)."""

from __future__ import annotations

import pytest

pytest.importorskip("timm")

from bench.__main__ import main  # noqa: E402
from bench.memory import _measure  # noqa: E402

TINY_VIT = dict(patch_size=8, embed_dim=32, depth=1, num_heads=2)
TINY_PLAN = dict(
    forward=[dict(kind="forward", model="vit_tiny_patch16_224", img_size=[32, 16], batch=2, overrides=TINY_VIT)],
    compiled=[],
    dynamic=[
        dict(
            kind="dynamic",
            model="vit_tiny_patch16_224",
            img_size=[32, 16],
            build_size=[16, 16],
            batch=2,
            overrides=TINY_VIT,
        )
    ],
    variable=dict(kind="variable", n=3, n_full=1, depth=1, embed_dim=32, num_heads=2, seed=0, hf=False),
    resample=dict(embed_dim=32, targets=[[4, 2]], vit="vit_tiny_patch16_224", overrides=TINY_VIT),
    memory=None,
)


def test_bench_writes_markdown(tmp_path, capsys):
    out = tmp_path / "bench.md"
    report = main(["--quick", "--runs", "1", "--warmup", "1", "--out", str(out)], plan=TINY_PLAN)
    text = out.read_text()
    assert text.startswith("# Benchmarks")
    for title in ("## Machine", "(a) Forward throughput", "(b) Dynamic-size", "(c) Variable-length", "(d) Cost"):
        assert title in text
    assert "| model | setting |" in text and "ratio rectvit/peer" in text
    assert "failed" not in text
    assert len(report.sections) == 5 and "Summary against the targets" in text


def test_memory_measure_in_process():
    case = dict(kind="forward", model="vit_tiny_patch16_224", img_size=[16, 16], batch=1, overrides=TINY_VIT)
    result = _measure(case, "ours")
    assert result["peak_mib"] >= 0 and result["method"]
