"""Files from the Hugging Face hub, through huggingface_hub and its cache (the ``hub`` extra, imported lazily).

``hub_weights`` fetches a weights file the way timm's ``load_state_dict_from_hf`` does (a ``.safetensors``
alternative first, then the named file); ``hub_folder`` fetches ``config.json`` and the weights of an HF
``save_pretrained`` or timm ``push_to_hub`` repository, all from one commit. huggingface_hub decides where
the cache is (``cache_dir``, else ``HF_HUB_CACHE``, else ``$HF_HOME/hub``) and whether to go online
(``HF_HUB_OFFLINE=1``: the cache only). A cached file whose blob name is a checksum (sha256 for LFS
files, git's blob sha1 for small ones) is checked against it before it is read.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import CheckpointError

__all__ = ["HubSource", "split_hub_id", "hub_weights", "hub_folder", "hub_config", "verify_cached", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'rectvit[hub]' (or pip install huggingface_hub)"
WEIGHTS_NAME = "pytorch_model.bin"  # timm's default hub file; model.safetensors is tried first
SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_INDEX_NAME = "model.safetensors.index.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA1 = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class HubSource:
    """Where weights came from on the hub: the repository, the revision asked for (``None``: ``main``), the
    commit it resolved to in the cache, the weights file, and the local path (the file, or the snapshot
    folder of a whole repository)."""

    repo_id: str
    revision: str | None
    commit: str | None
    filename: str
    path: Path

    def __str__(self) -> str:
        at = f"@{self.commit}" if self.commit else (f"@{self.revision}" if self.revision else "")
        return f"hf-hub:{self.repo_id}{at} {self.filename}"


def split_hub_id(hub_id: str) -> tuple[str, str | None]:
    """``"org/name@revision"`` (timm's spelling) -> ``("org/name", "revision")``; no ``@``: revision ``None``."""
    repo, sep, revision = str(hub_id).partition("@")
    if not repo or repo.count("/") > 1 or (sep and not revision) or "@" in revision:
        raise CheckpointError(
            f"hub id {hub_id!r}: expected 'org/name' or 'org/name@revision' (a branch, tag or commit)."
        )
    return repo, revision or None


def _safe_alternatives(filename: str) -> list[str]:
    """timm's order: a ``.safetensors`` twin of a pickle file name first, then the name itself."""
    if filename.endswith(".safetensors"):
        return [filename]
    twins = {WEIGHTS_NAME: SAFE_WEIGHTS_NAME, "open_clip_pytorch_model.bin": "open_clip_model.safetensors"}
    twin = twins.get(filename) or (filename[:-4] + ".safetensors" if filename.endswith(".bin") else None)
    return [twin, filename] if twin else [filename]


def _hf():
    try:
        import huggingface_hub
        import huggingface_hub.constants
        import huggingface_hub.errors
    except ImportError:
        raise CheckpointError(
            f"downloading weights from the Hugging Face hub needs huggingface_hub: {INSTALL_HINT}. Without it, "
            "download the file yourself and pass checkpoint_path=PATH (or pretrained_cfg_overlay=dict(file=PATH))."
        ) from None
    return huggingface_hub


def _cache_dir(cache_dir: str | os.PathLike | None) -> str:
    return str(cache_dir) if cache_dir is not None else str(_hf().constants.HF_HUB_CACHE)


def _download(repo_id: str, filename: str, revision: str | None, cache_dir) -> Path:
    """One file through ``hf_hub_download`` (cache first; offline: cache only); huggingface_hub's errors pass."""
    path = _hf().hf_hub_download(repo_id=repo_id, filename=filename, revision=revision, cache_dir=cache_dir)
    return Path(path)


def _fetch_error(repo_id: str, names: list[str], revision: str | None, cache_dir, error: Exception) -> CheckpointError:
    """A ``CheckpointError`` saying why ``names`` of ``repo_id`` could not be had and what to do instead."""
    hf = _hf()
    errors = hf.errors
    where = f"hf-hub:{repo_id}" + (f"@{revision}" if revision else "")
    files = " or ".join(names)
    cache = _cache_dir(cache_dir)
    local = (
        f"download it where you are online (`hf download {repo_id}`, or huggingface_hub.hf_hub_download) into "
        "that cache, or use a local copy instead (a file or folder: load_model(PATH), or create_model(..., "
        "checkpoint_path=PATH) / pretrained_cfg_overlay=dict(file=PATH))"
    )
    if isinstance(error, errors.LocalEntryNotFoundError):
        mode = "HF_HUB_OFFLINE is set" if hf.constants.HF_HUB_OFFLINE else "the hub could not be reached"
        return CheckpointError(f"{where}: {files} is not in the cache at {cache} and {mode}; {local}.")
    if isinstance(error, errors.GatedRepoError):
        return CheckpointError(
            f"{where}: the repository is gated; accept its terms on huggingface.co and log in (`hf auth login` or "
            "HF_TOKEN), or pass a local copy as checkpoint_path=PATH."
        )
    if isinstance(error, errors.RepositoryNotFoundError):
        return CheckpointError(
            f"{where}: no such repository on the hub (or it is private: log in with `hf auth login` or HF_TOKEN); "
            "check the name."
        )
    if isinstance(error, errors.RevisionNotFoundError):
        return CheckpointError(f"{where}: the repository has no revision {revision!r}; name a branch, tag or commit.")
    if isinstance(error, errors.EntryNotFoundError):
        return CheckpointError(
            f"{where}: the repository has no {files}; pass the weights file's name (pretrained_cfg_overlay="
            "dict(hf_hub_filename=NAME)) or a local file as checkpoint_path=PATH."
        )
    first = str(error).splitlines()[0] if str(error) else ""
    return CheckpointError(f"{where}: could not get {files} ({type(error).__name__}: {first}); {local}.")


_VERIFIED: set[tuple[str, int, int]] = set()  # (blob, size, mtime_ns) of cached files whose checksum matched


def verify_cached(path: Path) -> None:
    """Check a cached hub file against the checksum its blob is named by (sha256 for LFS files, git's blob sha1
    otherwise); a file outside the ``blobs/`` layout carries no checksum and is taken as it is."""
    blob = Path(os.path.realpath(path))
    name = blob.name
    if blob.parent.name != "blobs" or not (_SHA256.fullmatch(name) or _SHA1.fullmatch(name)):
        return
    stat = blob.stat()
    key = (str(blob), stat.st_size, stat.st_mtime_ns)
    if key in _VERIFIED:
        return
    if len(name) == 64:
        digest, kind = hashlib.sha256(), "sha256"
    else:
        digest, kind = hashlib.sha1(f"blob {stat.st_size}\0".encode()), "git blob sha1"
    with open(blob, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    if digest.hexdigest() != name:
        raise CheckpointError(
            f"{path}: the cached file does not match the hub's checksum ({kind} {digest.hexdigest()[:16]}..., "
            f"expected {name[:16]}..., {stat.st_size} bytes); the download is truncated or corrupt. Delete {blob} "
            "and load again to download it afresh (huggingface_hub's force_download=True does the same)."
        )
    _VERIFIED.add(key)


def _commit(path: Path) -> str | None:
    """The commit a cached file's snapshot folder is named by (``.../snapshots/<commit>/<file>``)."""
    for parent in path.parents:
        if parent.parent.name == "snapshots":
            return parent.name
    return None


def _first(repo_id: str, names: list[str], revision: str | None, cache_dir) -> tuple[str, Path]:
    """The first of ``names`` the repository has (timm's safetensors-first order), checked."""
    errors = _hf().errors
    for i, name in enumerate(names):
        try:
            path = _download(repo_id, name, revision, cache_dir)
        except errors.EntryNotFoundError as e:
            if i + 1 < len(names):
                continue
            raise _fetch_error(repo_id, names, revision, cache_dir, e) from None
        except Exception as e:  # network, auth and cache misses, each its own huggingface_hub error type
            raise _fetch_error(repo_id, names, revision, cache_dir, e) from None
        verify_cached(path)
        return name, path
    raise AssertionError("unreachable: names is never empty")


def hub_weights(hub_id: str, filename: str | None = None, *, cache_dir=None) -> HubSource:
    """The weights file ``filename`` (timm's default ``pytorch_model.bin``) of ``hub_id`` (``org/name[@revision]``),
    its ``.safetensors`` twin when the repository has one, as timm's ``load_state_dict_from_hf``."""
    repo, revision = split_hub_id(hub_id)
    name, path = _first(repo, _safe_alternatives(filename or WEIGHTS_NAME), revision, cache_dir)
    return HubSource(repo, revision, _commit(path), name, path)


def hub_folder(hub_id: str, *, cache_dir=None) -> HubSource:
    """``config.json`` and the weights (``model.safetensors``, its shards, or ``pytorch_model.bin``) of an HF or
    timm hub repository, all from the commit ``config.json`` resolved to; ``path`` is the snapshot folder."""
    repo, revision = split_hub_id(hub_id)
    _, config = _first(repo, ["config.json"], revision, cache_dir)
    commit = _commit(config) or revision
    try:
        name, path = _first(repo, [SAFE_WEIGHTS_NAME, SAFE_INDEX_NAME, WEIGHTS_NAME], commit, cache_dir)
    except CheckpointError as e:
        raise CheckpointError(f"{e} (an HF or timm repository holds config.json and its weights)") from None
    if name == SAFE_INDEX_NAME:
        try:
            shards = sorted(set(json.loads(path.read_text()).get("weight_map", {}).values()))
        except (ValueError, AttributeError) as e:
            raise CheckpointError(f"{path}: not a valid shard index ({e}).") from None
        for shard in shards:
            _first(repo, [str(shard)], commit, cache_dir)
    return HubSource(repo, revision, _commit(config), name, config.parent)


def hub_config(hub_id: str, *, cache_dir=None) -> dict:
    """The ``config.json`` of a hub repository (``org/name[@revision]``) as a dict."""
    repo, revision = split_hub_id(hub_id)
    _, path = _first(repo, ["config.json"], revision, cache_dir)
    try:
        config = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"hf-hub:{hub_id}: config.json is not valid JSON ({e}).") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"hf-hub:{hub_id}: config.json must hold a JSON object, got {type(config).__name__}.")
    return config
