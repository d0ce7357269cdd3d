"""bench/native_training.py end to end at a tiny size: the three ways train, evaluate and report, the
figure and the docs block are written, and `make bench`'s section (f) fills its table."""

from __future__ import annotations

import pytest

pytest.importorskip("timm")
pytest.importorskip("PIL")

from bench import native_training as nt  # noqa: E402
from bench.harness import Report  # noqa: E402

# the three ways train once for the module; xdist_group keeps the module on one worker, so that happens once
pytestmark = pytest.mark.xdist_group("native_training")

TINY = dict(
    train_lines=24, test_lines=8, steps=2, tokens=512, embed_dim=16, depth=1, num_heads=1, naflex_seq_lens=(64,)
)


@pytest.fixture(scope="module")
def tiny():
    return nt.run(nt.replace(nt.QUICK, **TINY), log=lambda m: None)


def test_lines_are_native_width_text_of_the_stated_aspects():
    images, labels = nt.render_lines(40, seed=3)
    assert all(a.shape[0] == nt.HEIGHT and nt.MIN_W <= a.shape[1] <= nt.MAX_W for a in images)
    assert all(a.shape[1] % nt.PATCH == 0 and a.min() < 128 for a in images)  # whole patches, ink on every line
    assert set(labels) <= set(range(nt.CLASSES)) and len(set(labels)) > 3


@pytest.mark.slow
def test_three_ways_report(tiny, tmp_path):
    results, facts = tiny
    assert list(results) == ["packed", "padded", "naflex"]
    for r in results.values():
        assert len(r.losses) == 2 and r.images > 0 and 0 <= r.accuracy <= 1
        assert all(0 <= p < 1 for p in r.padded) and r.seconds >= r.step_seconds > 0
    assert results["packed"].dropped == 0 == results["padded"].dropped
    assert results["naflex"].dropped > 0  # rows of 64 patches: long lines (up to 128) are downscaled
    assert sum(results["packed"].padded) < sum(results["padded"].padded)  # packing wastes less than padding
    lines = nt.table(results)
    assert len(lines) == 5 and all(line.count("|") == 10 for line in lines)
    assert nt.against_targets(results).startswith("Against the targets: padded")
    nt.plot(results, str(tmp_path / "fig.png"))
    assert (tmp_path / "fig.png").read_bytes()[:4] == b"\x89PNG"
    doc = tmp_path / "doc.md"
    doc.write_text(f"before\n{nt.BEGIN}\nold\n{nt.END}\nafter\n")
    nt.write_docs(str(doc), "new table")
    assert doc.read_text() == f"before\n{nt.BEGIN}\nnew table\n{nt.END}\nafter\n"


def test_make_bench_section():
    report = Report("", {}, 1.0)
    nt.native_rows(report, {"quick": True, "overrides": TINY | {"steps": 1}, "ways": ("packed",)}, lambda m: None)
    (section,) = report.sections
    assert section.title.startswith("(f)") and any(line.startswith("| (a) rectvit packed") for line in section.extra)
