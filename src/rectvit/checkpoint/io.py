"""Reading and writing checkpoint files. Nothing here executes code from a file.

``.safetensors`` is the native format; ``.pth/.pt/.bin/.ckpt`` go through
``torch.load(weights_only=True)`` only; a folder is read as a Hugging Face ``save_pretrained``
folder (``config.json`` plus ``model.safetensors``, its sharded index, or ``pytorch_model.bin``);
``hf-hub:org/name`` is such a folder fetched through ``hub.py``. Writing is ``writer.py``'s.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..grid import MAX_AREA, MAX_SIDE
from .hub import HubSource, hub_folder

__all__ = [
    "RawCheckpoint",
    "read_checkpoint",
    "unwrap_state_dict",
    "check_dtypes",
    "check_recorded_size",
    "PICKLE_SUFFIXES",
    "HUB_PREFIX",
]

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
HUB_PREFIX = "hf-hub:"
_WRAPPER_KEYS = ("state_dict", "model", "module", "model_state_dict")
# Tensors of these names are learned floating-point values (weights, biases, position tables, tokens);
# integer buffers (Swin's relative_position_index, BatchNorm's num_batches_tracked) have other names.
_FLOAT_NAMES = re.compile(r"(weight|bias|pos_embed|position_embeddings|_token|bias_table|gamma)$")


def check_recorded_size(size: tuple[int, int], where: str) -> tuple[int, int]:
    """A ``CheckpointError`` for an absurd recorded input size, before any table of that size is allocated."""
    h, w = size
    if h > MAX_SIDE or w > MAX_SIDE or h * w > MAX_AREA:
        raise CheckpointError(
            f"{where}: records an input size of {h}x{w} pixels, beyond what rectvit accepts from a file "
            f"(sides up to {MAX_SIDE}, {MAX_AREA} pixels in all); the config is corrupt or not a model config. "
            "Build the model by name with the size yourself: rectvit.create_model(NAME, img_size=(H, W), "
            "checkpoint_path=...)."
        )
    return size


def check_dtypes(tensors: dict[str, torch.Tensor], where: str = "checkpoint") -> None:
    """A ``CheckpointError`` for complex tensors, and for integer or bool tensors where floats belong."""
    bad = [
        f"{k} ({str(v.dtype).replace('torch.', '')})"
        for k, v in tensors.items()
        if v.is_complex() or (not v.is_floating_point() and _FLOAT_NAMES.search(k))
    ]
    if bad:
        raise CheckpointError(
            f"{where}: {', '.join(bad[:8])} must hold real floating-point values (float32, float16 or bfloat16); "
            "rectvit does not cast them silently. Convert the tensors to float where the checkpoint was made."
        )


@dataclass
class RawCheckpoint:
    """A state dict as read, before any layout conversion, with what the file says about itself."""

    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors header metadata
    config: dict[str, Any] | None = None  # a folder's config.json (HF transformers' or timm's)
    path: Path | None = None
    hub: HubSource | None = None  # the hub repository, revision and file it came from


def unwrap_state_dict(obj: Any, where: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Peel ``state_dict``/``model``/``module`` wrappers and ``module.`` prefixes; keep tensors only."""
    for _ in range(3):
        if isinstance(obj, dict):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is not None and not any(isinstance(v, torch.Tensor) for v in obj.values()):
                obj = inner
                continue
        break
    if hasattr(obj, "state_dict") and callable(obj.state_dict) and not isinstance(obj, dict):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{where}: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}."
        )
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(
            f"{where}: holds no tensors (keys: {sorted(map(str, obj))[:10]}); expected a state dict, "
            f"possibly wrapped in one of {_WRAPPER_KEYS}."
        )
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    check_dtypes(tensors, where)
    return tensors


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt or truncated files
        raise CheckpointError(
            f"{path}: not a readable .safetensors file ({type(e).__name__}: {e}); "
            "the file may be truncated or corrupt — re-download or re-export it."
        ) from None
    return tensors, metadata


def _read_pickle(path: Path) -> dict[str, torch.Tensor]:
    with open(path, "rb") as f:
        head = f.read(4)
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        raise CheckpointError(
            f"{path}: not a checkpoint — a PyTorch checkpoint is a zip archive or a pickle, this file starts with "
            f"{head!r}. Check the path; rectvit reads .safetensors, .pth/.pt/.bin/.ckpt and HF folders."
        )
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message advises weights_only=False, which would run the file's code: never repeat it.
        found = re.search(r"(?:Unsupported global|GLOBAL|Unsupported operand)[^\n.]*", str(e))
        what = f" ({found.group(0).strip()})" if found else ""
        raise CheckpointError(
            f"{path}: refused — the file holds more than tensors and plain containers{what}; rectvit only loads "
            "pickles with torch.load(weights_only=True), which never runs code from a file. If you trust its "
            "source, convert it to .safetensors in an environment set up for that."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError, IndexError, TypeError) as e:
        if isinstance(e, (FileNotFoundError, IsADirectoryError, PermissionError)):
            raise
        first = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}: {first}); "
            "the file may be truncated or corrupt."
        ) from None
    return unwrap_state_dict(obj, str(path))


def _read_hf_folder(path: Path) -> RawCheckpoint:
    config_file = path / "config.json"
    if not config_file.is_file():
        raise CheckpointError(
            f"{path}: a checkpoint folder must hold config.json and weights (a Hugging Face save_pretrained "
            f"folder or a timm hub folder); found {sorted(p.name for p in path.iterdir())[:10]}."
        )
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{config_file}: not valid JSON ({e}).") from None
    if not isinstance(config, dict):
        raise CheckpointError(
            f"{config_file}: must hold a JSON object of settings, got a JSON {type(config).__name__}; "
            "it is not a Hugging Face or timm config.json."
        )
    index = path / "model.safetensors.index.json"
    state: dict[str, torch.Tensor] = {}
    metadata: dict[str, str] = {}
    if (path / "model.safetensors").is_file():
        state, metadata = _read_safetensors(path / "model.safetensors")
        check_dtypes(state, str(path / "model.safetensors"))
    elif index.is_file():
        for shard in _shard_files(path, index):
            part, _ = _read_safetensors(shard)
            state.update(part)
        check_dtypes(state, str(path))
    elif (path / "pytorch_model.bin").is_file():
        state = _read_pickle(path / "pytorch_model.bin")
    else:
        raise CheckpointError(
            f"{path}: no weights found; expected model.safetensors, model.safetensors.index.json or pytorch_model.bin."
        )
    return RawCheckpoint(state, metadata, config, path)


def _shard_files(folder: Path, index: Path) -> list[Path]:
    """The shard files a ``model.safetensors.index.json`` names, each checked to be a ``.safetensors`` file
    inside ``folder`` before any is opened."""
    try:
        weight_map = json.loads(index.read_text()).get("weight_map", {})
        names = sorted(set(weight_map.values()))
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, TypeError) as e:
        raise CheckpointError(f"{index}: not a valid shard index ({e}).") from None
    root = folder.resolve()
    shards = []
    for name in names:
        shard = (folder / str(name)).resolve() if isinstance(name, str) else None
        if shard is None or shard.parent != root or shard.suffix != ".safetensors" or os.path.isabs(name):
            raise CheckpointError(
                f"{index}: refused — shard {name!r} is not a .safetensors file directly inside {folder}; "
                "a shard index may only name files next to it."
            )
        shards.append(shard)
    if not shards:
        raise CheckpointError(f"{index}: names no shard files in its weight_map.")
    return shards


def _missing(path: Path) -> None:
    """The ``CheckpointError`` for a path that names no file: a loop of links, a dangling link, or nothing."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise CheckpointError(
                f"{path}: a loop of symbolic links (following them leads back to where they start), so it "
                "names no file; point the link at the checkpoint itself."
            ) from None
    if path.is_symlink():
        raise CheckpointError(
            f"{path}: a symbolic link to {os.readlink(path)}, which does not exist; point it at the checkpoint."
        )
    raise CheckpointError(f"{path}: no such file or folder; expected a .safetensors/.pth/.bin file or an HF folder.")


def read_checkpoint(source: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> RawCheckpoint:
    """Read a checkpoint file, a folder or ``hf-hub:org/name[@revision]`` (through huggingface_hub's cache,
    or ``cache_dir``) into a ``RawCheckpoint``; never executes code."""
    if isinstance(source, str) and source.startswith(HUB_PREFIX):
        hub = hub_folder(source[len(HUB_PREFIX) :], cache_dir=cache_dir)
        return replace(read_checkpoint(hub.path), hub=hub)
    path = Path(source).expanduser()
    if not path.exists():
        _missing(path)
    if path.is_dir():
        return _read_hf_folder(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        state, metadata = _read_safetensors(path)
        check_dtypes(state, str(path))
        return RawCheckpoint(state, metadata, None, path)
    if suffix in PICKLE_SUFFIXES:
        return RawCheckpoint(_read_pickle(path), {}, None, path)
    raise CheckpointError(
        f"{path}: unknown checkpoint suffix {suffix!r}; expected .safetensors or one of {PICKLE_SUFFIXES}, "
        "or a Hugging Face save_pretrained folder."
    )
