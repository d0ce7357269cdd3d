"""Reading and writing checkpoint files. Nothing here executes code from a file.

``.safetensors`` is the native format; ``.pth/.pt/.bin/.ckpt`` go through
``torch.load(weights_only=True)`` only; a folder is read as a Hugging Face ``save_pretrained``
folder (``config.json`` plus ``model.safetensors``, its sharded index, or ``pytorch_model.bin``).
Writers never overwrite their input and write atomically (temporary file, then rename).
"""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError

__all__ = [
    "RawCheckpoint",
    "read_checkpoint",
    "unwrap_state_dict",
    "write_safetensors",
    "resolve_hub",
    "PICKLE_SUFFIXES",
    "HUB_PREFIX",
]

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
HUB_PREFIX = "hf-hub:"
_WRAPPER_KEYS = ("state_dict", "model", "module", "model_state_dict")


@dataclass
class RawCheckpoint:
    """A state dict as read, before any layout conversion, with what the file says about itself."""

    state_dict: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors header metadata
    config: dict[str, Any] | None = None  # a folder's config.json (HF transformers' or timm's)
    path: Path | None = None


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
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path}: refused — the file holds more than tensors and plain containers, and rectvit only "
            f"loads pickles with torch.load(weights_only=True), which never runs code from the file "
            f"({first}). Convert it to .safetensors in an environment you trust."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
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
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{config_file}: not valid JSON ({e}).") from None
    index = path / "model.safetensors.index.json"
    state: dict[str, torch.Tensor] = {}
    metadata: dict[str, str] = {}
    if (path / "model.safetensors").is_file():
        state, metadata = _read_safetensors(path / "model.safetensors")
    elif index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text()).get("weight_map", {}).values()))
        except (json.JSONDecodeError, AttributeError) as e:
            raise CheckpointError(f"{index}: not a valid shard index ({e}).") from None
        for shard in shards:
            part, _ = _read_safetensors(path / shard)
            state.update(part)
    elif (path / "pytorch_model.bin").is_file():
        state = _read_pickle(path / "pytorch_model.bin")
    else:
        raise CheckpointError(
            f"{path}: no weights found; expected model.safetensors, model.safetensors.index.json or pytorch_model.bin."
        )
    return RawCheckpoint(state, metadata, config, path)


def resolve_hub(source: str) -> Path:
    """The local folder of ``hf-hub:org/name[@revision]``, through huggingface_hub's cache.

    huggingface_hub is optional (``pip install 'rectvit[hub]'``); with ``HF_HUB_OFFLINE=1`` only the
    local cache is read.
    """
    repo, _, revision = source[len(HUB_PREFIX) :].partition("@")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(
            f"{source}: reading hf-hub: sources needs huggingface_hub; pip install 'rectvit[hub]'."
        ) from None
    try:
        folder = snapshot_download(
            repo_id=repo, revision=revision or None, allow_patterns=["*.json", "*.safetensors", "*.bin", "*.pth"]
        )
    except Exception as e:  # network, auth or cache misses, each its own huggingface_hub error type
        raise CheckpointError(
            f"{source}: could not get it from the Hugging Face hub or its local cache ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); check the name, or download it and pass its folder."
        ) from None
    return Path(folder)


def read_checkpoint(source: str | os.PathLike) -> RawCheckpoint:
    """Read a checkpoint file, a folder or an ``hf-hub:`` name into a ``RawCheckpoint``; never executes code."""
    if isinstance(source, str) and source.startswith(HUB_PREFIX):
        source = resolve_hub(source)
    path = Path(source).expanduser()
    if not path.exists():
        raise CheckpointError(
            f"{path}: no such file or folder; expected a .safetensors/.pth/.bin file or an HF folder."
        )
    if path.is_dir():
        return _read_hf_folder(path)
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        state, metadata = _read_safetensors(path)
        return RawCheckpoint(state, metadata, None, path)
    if suffix in PICKLE_SUFFIXES:
        return RawCheckpoint(_read_pickle(path), {}, None, path)
    raise CheckpointError(
        f"{path}: unknown checkpoint suffix {suffix!r}; expected .safetensors or one of {PICKLE_SUFFIXES}, "
        "or a Hugging Face save_pretrained folder."
    )


def write_safetensors(
    tensors: dict[str, torch.Tensor],
    path: str | os.PathLike,
    metadata: dict[str, str] | None = None,
    protect: str | os.PathLike | None = None,
) -> Path:
    """Write ``tensors`` to ``path`` atomically (temporary file in the same folder, then rename).

    Refuses to write over ``protect`` (the file the tensors were loaded from).
    """
    from safetensors.torch import save_file

    path = Path(path).expanduser()
    if path.suffix.lower() != ".safetensors":
        raise CheckpointError(f"{path}: rectvit writes .safetensors files; give the output a .safetensors name.")
    if protect is not None and path.exists() and Path(protect).exists() and os.path.samefile(path, protect):
        raise CheckpointError(f"{path}: refusing to overwrite the checkpoint it was loaded from; choose another name.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=dict(metadata or {}))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a written checkpoint gets the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
