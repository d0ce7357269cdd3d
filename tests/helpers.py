"""Helpers shared by the test modules (import them with ``from helpers import ...``)."""

import inspect
import io
import warnings

import pytest
import torch

import rectvit
from rectvit.models import get_model_entry


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest absolute difference of two tensors of one shape (a shape mismatch fails)."""
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def timm_pair(name: str, seed: int = 0, **kw) -> tuple[torch.nn.Module, torch.nn.Module]:
    """timm's model ``name`` with random non-zero weights and ours built by the same call, timm's weights
    loaded into ours (random tables: their grid is named, never guessed); both in eval mode."""
    import timm  # the oracle, imported where used: modules that only share the other helpers run without it

    theirs = randomize_(timm.create_model(name, **kw), seed=seed).eval()
    ours = rectvit.create_model(name, **kw).eval()
    rectvit.load_checkpoint(ours, theirs.state_dict(), source_grid=ours.grid_size)
    return theirs, ours


def randomize_(model: torch.nn.Module, seed: int = 0, std: float = 0.02) -> torch.nn.Module:
    """Give every parameter and float buffer random non-zero values (oracles must agree on all of them)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() <= 1 and ("norm" in name or name.endswith("gamma")):
                p.copy_(1.0 + std * 5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(std * 5 * torch.randn(p.shape, generator=g))
    return model


# Tiny builds of registered names (timm drop-in and TorchScript tests)


def init_params(name: str) -> set[str]:
    cls = get_model_entry(name).cls
    return {p for klass in cls.__mro__ if "__init__" in klass.__dict__ for p in inspect.signature(klass).parameters}


def tiny(name: str, sized: bool = True) -> dict:
    """Small overrides that keep the architecture: fewer/narrower blocks and (``sized``) a small rectangle."""
    entry = get_model_entry(name)
    cfg, params = entry.config, init_params(name)
    kw: dict = {}
    if "depths" in params:  # Swin-like: four one-block stages (timm's pool_size and feature levels)
        kw = dict(depths=(1, 1, 1, 1), num_heads=(1, 1, 2, 2), embed_dim=8)
        if sized:
            p = cfg.get("patch_size", 4)
            win = cfg.get("window_size", 7)
            win = win if isinstance(win, int) else max(win)
            kw["img_size"] = (p * win * 2, p * win * 4)
    elif "depth" in params:  # ViT-like
        kw = dict(depth=3, embed_dim=32, num_heads=2)  # 3: timm's default features_only levels
        if sized and "backbone_layers" in params:  # a (2, 3) grid: R50 reduces by 16, stem-only p8 / R26 by 32
            kw["img_size"] = (32, 48) if len(cfg.get("backbone_layers", ())) == 3 else (64, 96)
        elif sized:
            p = cfg.get("patch_size", 16)
            s = cfg.get("patch_stride") or p
            kw["img_size"] = (p + s, p + 3 * s)
    return kw


def arch_config(name: str) -> tuple[type, dict]:
    """The class ``name`` builds and the keywords it receives in a test build (``tiny`` applied), less the
    name-only ones: ``img_size`` (a default size; ``tiny`` picks the size from the patch and window) and
    ``num_classes`` (kept only as whether there is a head). docs/testing.md states this rule."""
    entry = get_model_entry(name)
    cfg = {**entry.config, **tiny(name)}
    cfg.pop("img_size", None)
    cfg["num_classes"] = cfg.get("num_classes", 1000) != 0
    return entry.cls, cfg


def distinct_names(names: list[str]) -> list[str]:
    """One name per distinct architecture under test, the first of each: names whose ``arch_config`` is
    equal (tiny/small/base widths, 224/384 sizes, head sizes) exercise the same code with the same keywords."""
    seen, out = set(), []
    for n in names:
        cls, cfg = arch_config(n)
        key = (cls, repr(sorted(cfg.items())))
        if key not in seen:
            seen.add(key)
            out.append(n)
    return out


def image_batch(model, batch: int = 2, size=None) -> torch.Tensor:
    c, h, w = model.pretrained_cfg["input_size"]
    if size is not None:
        h, w = size
    return torch.randn(batch, c, h, w)


# TorchScript and input checks (tests/test_torchscript*.py, tests/test_timm_dropin.py)


def script(model: torch.nn.Module) -> torch.jit.ScriptModule:
    """``torch.jit.script(model)`` without torch 2.14's deprecation warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(model)


def save_load(scripted: torch.jit.ScriptModule) -> torch.jit.ScriptModule:
    """The program as ``torch.jit.save`` writes it and ``torch.jit.load`` reads it back."""
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    return torch.jit.load(buffer)


def input_errors(model: torch.nn.Module, bad) -> list[str]:
    """The ``InputSizeError`` message ``model`` gives for each input of ``bad`` (each must raise one)."""
    out = []
    for b in bad:
        with pytest.raises(rectvit.InputSizeError) as e:
            model(b)
        out.append(str(e.value))
    return out


# Packed batches (tests/test_pack.py, tests/test_pack_eva.py)


def param_grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter gradient of ``model``, cloned (parameters without one left out)."""
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def packed_and_per_image_grads(model: torch.nn.Module, xs: list[torch.Tensor], target: torch.Tensor):
    """Gradients of ``sum(model(x_i) * target_i)``: once through ``rectvit.pack(xs)``, once image by image."""
    model.zero_grad()
    (model(rectvit.pack(xs)) * target).sum().backward()
    packed = param_grads(model)
    model.zero_grad()
    for x, t in zip(xs, target):
        (model(x[None])[0] * t).sum().backward()
    return packed, param_grads(model)
