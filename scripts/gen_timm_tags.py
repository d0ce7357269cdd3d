"""Regenerate ``src/rectvit/models/pretrained_tags.py``: timm's pretrained tags for rectvit's names.

For every architecture in ``rectvit.list_models()`` that timm has pretrained cfgs for, every tag timm
accepts in ``create_model("arch.tag")`` (with or without downloadable weights), the default tag first,
with the fields timm's ``create_model`` turns into model keywords (``num_classes``, ``input_size``,
``fixed_input_size``) and those ``timm.data.resolve_data_config`` reads (``input_size``, ``mean``,
``std``, ``crop_pct``, ``crop_mode``, ``interpolation``, ``test_input_size``, ``test_crop_pct``), and where
its weights are (``hf_hub_id``, ``hf_hub_filename``, ``url``) where that is not timm's usual hub repository.
rectvit reads the generated table at run time; timm is needed only here.

    python scripts/gen_timm_tags.py            # rewrite the table from the installed timm
    python scripts/gen_timm_tags.py --check    # exit 1 if the table differs from the installed timm
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import timm
from timm.models import get_pretrained_cfg

import rectvit

OUT = Path(__file__).resolve().parents[1] / "src" / "rectvit" / "models" / "pretrained_tags.py"

# Normalisation statistics by name; statistics not listed here get NORM<n>.
KNOWN_NORMS = {
    "IMAGENET": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "INCEPTION": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "CLIP": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "SAT493M": ((0.43, 0.411, 0.296), (0.213, 0.156, 0.143)),  # DINOv3's satellite-image statistics
}
EXTRA_KEYS = ("test_input_size", "test_crop_pct")  # read by resolve_data_config(use_test_size=True)
# Where a tag's weights are: timm's hub repository "timm/ARCH.TAG" unless SOURCES says otherwise.
SOURCE_KEYS = ("hf_hub_id", "hf_hub_filename", "url")
# Positional row fields after (tag, num_classes, input_size, norm, crop_pct), with the defaults left off.
TAIL_DEFAULTS = (("crop_mode", "center"), ("interpolation", "bicubic"), ("fixed_input_size", True))


def timm_tags(arch: str) -> list[str]:
    """Every tag timm accepts for ``arch``, its default tag first ([] when timm has no cfg for it)."""
    default = get_pretrained_cfg(arch)
    if default is None:
        return []
    tags = [n.partition(".")[2] for n in timm.list_models(arch, include_tags=True)]
    return [default.tag] + [t for t in tags if t and t != default.tag]


def lit(value) -> str:
    """A Python literal the way ruff formats it (double-quoted strings)."""
    return json.dumps(value) if isinstance(value, str) else repr(value)


def source(arch: str, cfg) -> dict:
    """The weight-source fields of ``cfg`` that differ from timm's convention: ``hf_hub_id`` when it is not
    ``"timm/ARCH.TAG"`` (``None`` or ``""``: no weights), ``hf_hub_filename`` where set, ``url`` where the hub
    has none."""
    out = {}
    if cfg.hf_hub_id != f"timm/{arch}.{cfg.tag}":
        out["hf_hub_id"] = cfg.hf_hub_id
    if cfg.hf_hub_filename:
        out["hf_hub_filename"] = cfg.hf_hub_filename
    if cfg.url and not cfg.hf_hub_id:
        out["url"] = cfg.url
    return out


def source_line(name: str, fields: dict) -> str:
    """One ``SOURCES`` entry the way ruff formats it (split over lines when longer than 120 characters)."""
    items = ", ".join(f"{lit(k)}: {lit(v)}" for k, v in fields.items())
    line = f"    {lit(name)}: {{{items}}},\n"
    if len(line) <= 121:
        return line
    return f"    {lit(name)}: {{\n" + "".join(f"        {lit(k)}: {lit(v)},\n" for k, v in fields.items()) + "    },\n"


def row(cfg, norms: dict[tuple, str]) -> str:
    c, h, w = cfg.input_size
    size = str(h) if (c, h) == (3, w) else repr(tuple(cfg.input_size))
    stats = (tuple(cfg.mean), tuple(cfg.std))
    if stats not in norms:
        norms[stats] = f"NORM{len(norms) - len(KNOWN_NORMS) + 1}"
    fields = [lit(cfg.tag), str(cfg.num_classes), size, norms[stats], repr(cfg.crop_pct)]
    tail = [getattr(cfg, k) for k, _ in TAIL_DEFAULTS]
    extras = {k: getattr(cfg, k) for k in EXTRA_KEYS if getattr(cfg, k) is not None}
    if extras:
        tail.append(extras)
    while tail and len(tail) <= len(TAIL_DEFAULTS) and tail[-1] == TAIL_DEFAULTS[len(tail) - 1][1]:
        tail.pop()
    return "(" + ", ".join(fields + [lit(v) for v in tail]) + ")"


def render() -> str:
    norms = {stats: name for name, stats in KNOWN_NORMS.items()}
    blocks, sources, pairs, hub = [], [], 0, 0
    for arch in rectvit.list_models():
        tags = timm_tags(arch)
        if not tags:
            continue
        cfgs = [get_pretrained_cfg(f"{arch}.{t}") for t in tags]
        rows = [row(cfg, norms) for cfg in cfgs]
        sources += [source_line(f"{arch}.{cfg.tag}", source(arch, cfg)) for cfg in cfgs if source(arch, cfg)]
        pairs += len(rows)
        hub += sum(bool(cfg.hf_hub_id) for cfg in cfgs)
        one_line = f"    {lit(arch)}: ({rows[0]},),\n"
        if len(rows) == 1 and len(one_line) <= 121:  # what ruff format makes of a one-tag entry
            blocks.append(one_line)
        else:
            blocks.append(f"    {lit(arch)}: (\n" + "".join(f"        {r},\n" for r in rows) + "    ),\n")
    norm_lines = "".join(f"{name} = {stats!r}\n" for stats, name in norms.items())
    what = f"{len(blocks)} architectures, {pairs} tags"
    hub_line = f"HUB_TAGS = {hub}  # tags whose weights timm keeps on the Hugging Face hub\n"
    header = f'''"""timm {timm.__version__}'s pretrained tags for rectvit's architectures ({what}).

Generated by ``scripts/gen_timm_tags.py`` from the installed timm; do not edit by hand. ``TAGS[arch]``
lists every tag timm accepts in ``create_model("arch.tag")``, timm's default tag first, each as
``(tag, num_classes, input_size, norm, crop_pct[, crop_mode[, interpolation[, fixed_input_size[, extras]]]])``:
``input_size`` is ``S`` for ``(3, S, S)``, ``norm`` is ``(mean, std)``, left-off fields are
``"center"``, ``"bicubic"``, ``True`` and ``{{}}`` (extras: ``test_input_size`` / ``test_crop_pct``).
A tag's weights are in timm's hub repository ``"timm/ARCH.TAG"`` unless ``SOURCES["ARCH.TAG"]`` says
otherwise (``hf_hub_id``: another repository, ``None`` or ``""`` for none; ``hf_hub_filename``; ``url``).
"""

'''
    return (
        header
        + norm_lines
        + "\nTAGS: dict[str, tuple[tuple, ...]] = {\n"
        + "".join(blocks)
        + "}\n\nSOURCES: dict[str, dict[str, str | None]] = {\n"
        + "".join(sources)
        + "}\n"
        + hub_line
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the table differs from the installed timm")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        same = OUT.exists() and OUT.read_text() == text
        print(f"{OUT}: {'up to date' if same else 'differs from timm ' + timm.__version__}")
        return 0 if same else 1
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
