"""Benchmark cases: each builds a peer and a rectvit side on the same weights and inputs.

A case is a plain dict (JSON-ready, so a memory-measuring subprocess can rebuild it) and
:func:`build_case` turns it into ``{label: callable}`` plus facts about it. Kinds:

- ``forward``: ``timm.create_model(name)`` vs ``rectvit.create_model(name)`` with timm's state dict
  loaded through ``rectvit.load_checkpoint``; one batch at ``img_size``.
- ``dynamic``: rectvit static vs rectvit ``dynamic_img_size=True`` on the same weights and input.
- ``variable``: AST on spectrograms of different lengths: rectvit ``forward_variable`` (packed) vs
  padding every input to the model's length and running fixed-size batches of 8 (HF transformers'
  AST when installed, and rectvit's own static model, the peers' way with rectvit's kernels), vs
  grouping by shape (``packing=False``); and a training step (forward + backward), padded vs packed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

import rectvit

__all__ = ["build_case", "Built", "spectrogram_inputs", "max_diff"]


@dataclass
class Built:
    fns: dict[str, Callable[[], Any]]
    models: dict[str, torch.nn.Module] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)


def _seeded(shape, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _pair(name: str, img_size, overrides: dict[str, Any]):
    """timm's model and ours, same architecture, ours carrying timm's (random) weights."""
    import timm

    torch.manual_seed(0)
    peer = timm.create_model(name, pretrained=False, img_size=tuple(img_size), **overrides).eval()
    ours = rectvit.create_model(name, img_size=tuple(img_size), **overrides).eval()
    sd = peer.state_dict()
    grid = None
    if "pos_embed" in sd:
        grid = tuple(getattr(peer.patch_embed, "grid_size", ()) or ()) or None
    windows = {  # random bias tables cannot show their windows: timm's model was built at this size, as ours
        f"{n}.relative_position_bias_table": tuple(m.window_size)
        for n, m in ours.named_modules()
        if isinstance(getattr(m, "relative_position_bias_table", None), torch.Tensor)
    }
    rectvit.load_checkpoint(ours, sd, source_grid=grid, source_windows=windows or None)
    return peer, ours


def max_diff(a, b, only: list[int] | None = None) -> float:
    """Largest absolute difference of two outputs (tensors, or lists of them, restricted to ``only``)."""
    if isinstance(a, torch.Tensor):
        return (a.float() - b.float()).abs().max().item()
    idx = range(len(a)) if only is None else only
    return max((max_diff(a[i], b[i]) for i in idx), default=float("nan"))


def _forward_case(case: dict[str, Any]) -> Built:
    peer, ours = _pair(case["model"], case["img_size"], case.get("overrides", {}))
    x = _seeded((case["batch"], ours.in_chans, *case["img_size"]), 1)
    if case.get("compile"):
        peer_fn, ours_fn = torch.compile(peer), torch.compile(ours)
    else:
        peer_fn, ours_fn = peer, ours
    return Built({"peer": lambda: peer_fn(x), "ours": lambda: ours_fn(x)}, {"peer": peer, "ours": ours})


def _dynamic_case(case: dict[str, Any]) -> Built:
    """Static model at ``img_size`` vs a dynamic one built at ``build_size`` running ``img_size`` inputs."""
    overrides = case.get("overrides", {})
    torch.manual_seed(0)
    build = tuple(case.get("build_size", case["img_size"]))
    dyn = rectvit.create_model(case["model"], img_size=build, dynamic_img_size=True, **overrides).eval()
    static = rectvit.create_model(case["model"], img_size=build, **overrides).eval()
    static.load_state_dict(dyn.state_dict())
    static.set_input_size(img_size=tuple(case["img_size"]))
    x = _seeded((case["batch"], dyn.in_chans, *case["img_size"]), 1)
    return Built({"peer": lambda: static(x), "ours": lambda: dyn(x)}, {"peer": static, "ours": dyn})


def spectrogram_inputs(n: int, n_full: int, seed: int = 0, mel: int = 128, max_frames: int = 1024, min_frames=200):
    """``n`` seeded ``(1, mel, frames)`` inputs, frames uniform in ``[min_frames, max_frames]``;
    ``n_full`` of them (spread through the list) exactly ``max_frames`` long, needing no padding."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(min_frames, max_frames + 1, (n,), generator=g).tolist()
    full = set(range(0, n, max(1, n // max(n_full, 1)))[:n_full]) if n_full else set()
    frames = [max_frames if i in full else f for i, f in enumerate(frames)]
    return [torch.randn(1, mel, f, generator=g) for f in frames]


def _hf_ast(depth: int, num_classes: int, embed_dim: int, heads: int):
    try:
        from transformers import ASTConfig, ASTForAudioClassification
    except ImportError:
        return None
    config = ASTConfig(
        hidden_size=embed_dim,
        num_hidden_layers=depth,
        num_attention_heads=heads,
        intermediate_size=4 * embed_dim,
        max_length=1024,
        num_mel_bins=128,
        frequency_stride=10,
        time_stride=10,
        num_labels=num_classes,
        layer_norm_eps=1e-12,
    )
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    return ASTForAudioClassification(config).eval()


def _variable_case(case: dict[str, Any]) -> Built:
    depth = case.get("depth", 12)
    xs = spectrogram_inputs(case["n"], case.get("n_full", 4), seed=case.get("seed", 0))
    batch = case.get("pad_batch", 8)
    heads = case.get("num_heads", 12)
    torch.manual_seed(0)
    ours = rectvit.create_model(
        "ast_base_patch16_s10_128x1024", depth=depth, embed_dim=case.get("embed_dim", 768), num_heads=heads
    ).eval()
    hf = _hf_ast(depth, ours.num_classes, ours.embed_dim, heads) if case.get("hf", True) else None
    if hf is not None:
        rectvit.load_checkpoint(ours, hf.state_dict(), source_grid=(12, 101))
    frames = ours.img_size[1]

    def padded_batches():
        for s in range(0, len(xs), batch):
            yield torch.stack([F.pad(x, (0, frames - x.shape[-1])) for x in xs[s : s + batch]])

    def ours_padded():
        return [y for b in padded_batches() for y in ours(b)]

    def ours_variable():
        return rectvit.forward_variable(ours, xs, max_batch=batch, max_tokens=case.get("max_tokens"))

    def ours_grouped():
        return rectvit.forward_variable(ours, xs, max_batch=batch, packing=False)

    # Training step: the same images, padded batches of `batch` vs packed chunks of `batch` images
    # (first-fit decreasing by tokens). Gradients need autograd even under the harness's inference mode.
    trainee = copy.deepcopy(ours).train()
    trainee.dynamic_img_size = True
    trainee.patch_embed.strict_img_size = False
    labels = torch.arange(len(xs)) % trainee.num_classes
    tokens = [trainee.num_prefix_tokens + math.prod(trainee.feat_size(tuple(x.shape[-2:]))) for x in xs]
    chunks = rectvit.variable.plan_chunks(tokens, case.get("max_tokens"), batch)

    def train_step(batches):
        with torch.inference_mode(False), torch.enable_grad():
            trainee.zero_grad(set_to_none=True)
            for inputs, idx in batches():
                F.cross_entropy(trainee(inputs), labels[idx]).backward()
        return [p.grad for p in trainee.parameters()]

    def train_padded():
        return train_step(lambda: zip(padded_batches(), (slice(s, s + batch) for s in range(0, len(xs), batch))))

    def train_packed():
        return train_step(lambda: ((rectvit.pack([xs[i] for i in c]), c) for c in chunks))

    fns: dict[str, Callable[[], Any]] = {}
    if hf is not None:

        def hf_padded():
            # HF's AST takes (B, frames, mel) and transposes to (B, 1, mel, frames) itself.
            return [y for b in padded_batches() for y in hf(input_values=b[:, 0].transpose(1, 2)).logits]

        fns["hf"] = hf_padded
    fns["ours_padded"] = ours_padded
    fns["ours_grouped"] = ours_grouped
    fns["ours"] = ours_variable
    fns["train_padded"] = train_padded
    fns["train_packed"] = train_packed
    built = Built(fns, {"ours": ours} | ({"hf": hf} if hf is not None else {}))
    built.facts.update(
        full=[i for i, x in enumerate(xs) if x.shape[-1] == frames],
        frames=[x.shape[-1] for x in xs],
        depth=depth,
    )
    return built


def build_case(case: dict[str, Any]) -> Built:
    kind = case["kind"]
    if kind == "forward":
        return _forward_case(case)
    if kind == "dynamic":
        return _dynamic_case(case)
    if kind == "variable":
        return _variable_case(case)
    raise ValueError(f"unknown case kind {kind!r}")
