"""Model names -> (model class, default config), timm's names and configs where the architecture is the same."""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ..errors import RectViTError
from ..grid import check_img_size
from .pretrained_cfgs import TIMM_MODULES, has_hub_weights, known_tags, pretrained_cfg_for

__all__ = [
    "register_model",
    "build_model",
    "list_models",
    "list_pretrained",
    "list_modules",
    "get_model_entry",
    "split_model_name_tag",
    "suggest_names",
    "ModelEntry",
]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    cls: type[nn.Module]
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def module(self) -> str:
        """rectvit's family file holding the class (``"vit"``, ``"hybrid"``, ``"swin"``...)."""
        return self.cls.__module__.rsplit(".", 1)[-1]

    @property
    def timm_module(self) -> str:
        """The timm module (file) holding the same architecture (``"vision_transformer"``, ``"deit"``...)."""
        if self.module == "hybrid":
            return "vision_transformer_hybrid"
        for pattern, module in TIMM_MODULES:
            if fnmatch.fnmatchcase(self.name, pattern):
                return module
        return self.module


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, cls: type[nn.Module], **config: Any) -> None:
    """Register ``name`` as ``cls(**config)``; overrides given to ``create_model`` win over ``config``."""
    if name in _REGISTRY:
        raise RectViTError(f"model name {name!r} is registered twice.")
    if "." in name:
        raise RectViTError(f"model name {name!r} may not contain '.', which separates a pretrained tag.")
    _REGISTRY[name] = ModelEntry(name, cls, dict(config))


def split_model_name_tag(name: str, no_tag: str = "") -> tuple[str, str]:
    """``"vit_base_patch16_224.augreg_in1k"`` -> ``("vit_base_patch16_224", "augreg_in1k")`` (timm's convention)."""
    arch, _, tag = name.partition(".")
    return arch, tag or no_tag


def _str_list(value: str | Iterable[str] | None, name: str) -> list[str]:
    if not value:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, Iterable) and not isinstance(value, (bytes, dict)):
        items = list(value)
        if all(isinstance(v, str) for v in items):
            return items
    raise RectViTError(
        f"list_models: {name} must be a name pattern such as 'vit_*' or a list of them, got {value!r} "
        f"({type(value).__name__})."
    )


def _check_flag(value: Any, name: str, none: bool = False) -> None:
    if not (isinstance(value, bool) or (none and value is None)):
        allowed = "True, False or None" if none else "True or False"
        raise RectViTError(f"list_models: {name} must be {allowed}, got {value!r} ({type(value).__name__}).")


def _natural_key(name: str) -> list:
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", name.lower())]


def list_models(
    filter: str | Iterable[str] = "",
    module: str | Iterable[str] = "",
    pretrained: bool = False,
    exclude_filters: str | Iterable[str] = "",
    name_matches_cfg: bool = False,
    include_tags: bool | None = None,
) -> list[str]:
    """Registered names, as timm's ``list_models``: shell-style ``filter`` (one or a list; all when empty)
    minus ``exclude_filters``, restricted to ``module`` (timm's module names such as ``"vision_transformer"``,
    ``"deit"``, ``"vision_transformer_hybrid"``, ``"swin_transformer"``, or rectvit's family file names
    ``"vit"``, ``"hybrid"``, ``"swin"``), naturally sorted.

    ``pretrained=True`` keeps the names whose weights timm keeps on the Hugging Face hub (a bare name: those of
    its default tag), which ``create_model(name, pretrained=True)`` fetches. ``include_tags=True``
    lists every ``"arch.tag"`` timm has for the architectures (the bare name where timm has no tags).
    ``name_matches_cfg`` is accepted for timm compatibility (every rectvit name is its own config).
    """
    for flag, value in (("pretrained", pretrained), ("name_matches_cfg", name_matches_cfg)):
        _check_flag(value, flag)
    _check_flag(include_tags, "include_tags", none=True)
    modules = set(_str_list(module, "module"))
    if include_tags is None:
        include_tags = pretrained
    names = [e.name for e in _REGISTRY.values() if not modules or {e.module, e.timm_module} & modules]
    includes, excludes = _str_list(filter, "filter"), _str_list(exclude_filters, "exclude_filters")
    if include_tags:
        names = [f"{n}.{t}" if t else n for n in names for t in known_tags(n) or [pretrained_cfg_for(n)["tag"]]]
        includes = [p for f in includes for p in ((f,) if "." in f else (f, f + ".*"))]
        excludes = [p for f in excludes for p in ((f,) if "." in f else (f, f + ".*"))]
    if includes:
        names = [n for n in names if any(fnmatch.fnmatchcase(n, f) for f in includes)]
    names = [n for n in names if not any(fnmatch.fnmatchcase(n, f) for f in excludes)]
    if pretrained:  # a bare name: its default tag's weights, as timm
        names = [n for n in names if has_hub_weights(*split_model_name_tag(n))]
    return sorted(set(names), key=_natural_key)


def list_pretrained(filter: str | Iterable[str] = "", exclude_filters: str | Iterable[str] = "") -> list[str]:
    """``"arch.tag"`` names whose weights timm keeps on the Hugging Face hub, as timm's ``list_pretrained``."""
    return list_models(filter, pretrained=True, exclude_filters=exclude_filters)


def list_modules() -> list[str]:
    """The module names ``list_models(module=...)`` accepts: timm's and rectvit's family file names."""
    return sorted({m for e in _REGISTRY.values() for m in (e.module, e.timm_module)})


def suggest_names(name: str, limit: int = 8) -> list[str]:
    """Registered names closest to ``name``, most similar first: one it begins (``vit_tiny_patch16`` ->
    ``vit_tiny_patch16_224``) ranks first, and case and dashes are ignored (``ViT-Tiny-Patch16-224``)."""
    key = name.lower().replace("-", "_").strip()

    def score(candidate: str) -> float:
        ratio = difflib.SequenceMatcher(None, key, candidate).ratio()
        return ratio + (1.0 if candidate.startswith(key) or key.startswith(candidate) else 0.0)

    ranked = sorted(_REGISTRY, key=lambda n: (-score(n), _natural_key(n)))
    close = [n for n in ranked if score(n) >= 0.6]
    return (close or ranked)[:limit]


def get_model_entry(name: str) -> ModelEntry:
    """The entry of ``name``; a timm pretrained tag (``"arch.tag"``) is ignored: the architecture is the same."""
    arch, _ = split_model_name_tag(name)
    try:
        return _REGISTRY[arch]
    except KeyError:
        spelled = arch.lower().replace("-", "_").strip()
        if spelled in _REGISTRY:
            hint = f"did you mean {spelled!r}? Names are lower case, with underscores"
        else:
            hint = f"the closest names in rectvit.list_models() are {suggest_names(arch)}"
        raise RectViTError(f"unknown model {name!r}; {hint}.") from None


def _parameters(cls: type[nn.Module]) -> dict[str, inspect.Parameter]:
    """The keyword parameters of ``cls`` and its bases' constructors, the class's own winning."""
    params: dict[str, inspect.Parameter] = {}
    for klass in reversed(cls.__mro__):
        if "__init__" in klass.__dict__ and klass is not object:
            params.update(inspect.signature(klass.__init__).parameters)
    return params


def _check_values(cls: type[nn.Module], kwargs: dict[str, Any], what: str) -> None:
    """Refuse what a constructor would take silently and wrongly: a non-bool for a ``bool`` keyword (``"no"``
    is true in Python), and an ``img_size`` too large to build (``grid.check_img_size``)."""
    params = _parameters(cls)
    for key, value in kwargs.items():
        param = params.get(key)
        if param is None:
            continue
        note = str(param.annotation).replace(" ", "")
        flag = isinstance(param.default, bool) or note in ("bool", "bool|None", "Optional[bool]")
        if flag and not isinstance(value, bool) and not (value is None and param.default is None):
            raise RectViTError(f"{what}: {key} must be True or False, got {value!r} ({type(value).__name__}).")
    if kwargs.get("img_size") is not None:
        check_img_size(kwargs["img_size"], "img_size")


def build_model(cls: type[nn.Module], config: dict[str, Any], overrides: dict[str, Any], what: str) -> nn.Module:
    """``cls(**config, **overrides)``; a keyword the class does not take, or a value of the wrong kind for a
    flag, is a ``RectViTError`` naming ``what``."""
    kwargs = {**config, **overrides}
    _check_values(cls, kwargs, what)
    try:
        return cls(**kwargs)
    except TypeError as e:
        unknown = sorted(set(overrides) - set(_parameters(cls)))
        if unknown:
            raise RectViTError(f"{what}: bad keyword argument(s) {unknown}: {e}") from None
        raise RectViTError(f"{what}: {e}") from None
