"""Writing files without losing one: the writer guard and atomic writes, for every writer in rectvit.

``save_checkpoint``, ``export_program(path=...)``, ``export_onnx`` and the CLI all write through
``write_atomic`` after ``check_output``: nothing is written onto a file a model was loaded from (by any
spelling of its path: relative, ``..``, symbolic or hard links, a case-folding file system), onto a
folder or under a file; a file appears complete or not at all, with the umask's permissions.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError

__all__ = ["TEMP_MARK", "checkpoint_files", "sources_of", "check_output", "write_atomic", "write_safetensors"]

TEMP_MARK = ".rectvit-partial-"  # a write in progress: the folder .NAME.rectvit-partial-PID-XXXX.tmp next to NAME
_STALE_TEMP = re.compile(r"^\..+\.rectvit-partial-(\d+)-[^.]*\.tmp$")

PathLike = str | os.PathLike


def checkpoint_files(path: PathLike) -> tuple[str, ...]:
    """What a checkpoint at ``path`` is made of, as a model records it (``model.source_files``): the path
    as given and resolved, and for a folder every file in it (weights, shards, index, config, the rest)."""
    path = Path(path).expanduser()
    found = [os.path.abspath(path), os.path.realpath(path)]
    if path.is_dir():
        found += [os.path.abspath(f) for f in sorted(path.rglob("*")) if f.is_file()]
    return tuple(dict.fromkeys(found))


def sources_of(model: Any) -> tuple[str, ...]:
    """Every path ``model`` was loaded from (``source_files``, and ``source_path``): what no writer may replace."""
    recorded = tuple(getattr(model, "source_files", ()) or ())
    path = getattr(model, "source_path", None)
    return recorded + ((str(path),) if path else ())


def _same(a: PathLike, b: PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _inside(out: Path, folder: Path) -> bool:
    """``out`` is in ``folder`` (or is it) by any spelling: lexically, resolved, or an ancestor that is the same
    folder by another name (a case-folding file system, a bind mount, a link to the folder)."""
    out_abs, folder_abs = Path(os.path.abspath(out)), Path(os.path.abspath(folder))
    if out_abs.is_relative_to(folder_abs) or Path(os.path.realpath(out)).is_relative_to(os.path.realpath(folder)):
        return True
    return any(_same(parent, folder) for parent in (out_abs, *out_abs.parents) if parent.exists())


def _writes_onto(out: Path, source: Path) -> bool:
    """Would writing ``out`` replace ``source`` (a file, or anything in a folder) by whatever spelling?"""
    if source.is_dir():
        return _inside(out, source) or any(_same(out, f) for f in source.rglob("*") if f.is_file())
    if os.path.abspath(out) == os.path.abspath(source) or os.path.realpath(out) == os.path.realpath(source):
        return True
    return _same(out, source)  # a hard link, a symbolic link either way, another case on a case-folding disk


def check_output(path: PathLike, protect: Iterable[PathLike] = (), suffixes: tuple[str, ...] = ()) -> Path:
    """The path a writer may write, or a ``CheckpointError`` saying why not; its folder is made if missing.

    Refused, in this order: anything that would replace a path of ``protect`` (the files a model was
    loaded from, ``sources_of(model)``): the same file by any spelling, or anything inside a protected
    folder; a folder; a path under a file; a suffix not in ``suffixes`` (when given).
    """
    path = Path(path).expanduser()
    for source in dict.fromkeys(Path(p).expanduser() for p in protect):
        if (source.exists() or source.is_symlink()) and _writes_onto(path, source):
            where = " outside that folder" if source.is_dir() else ""
            raise CheckpointError(
                f"{path}: refusing to overwrite the checkpoint the model was loaded from ({source}); choose "
                f"another name{where}."
            )
    if path.is_dir():
        example = path / f"model{suffixes[0] if suffixes else '.safetensors'}"
        raise CheckpointError(f"{path}: is a folder; give the output a file name such as {example}.")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise CheckpointError(f"{path}: {parent} is a file, not a folder; choose an output path in a folder.")
        if parent.exists():
            break
    if suffixes and path.suffix.lower() not in suffixes:
        raise CheckpointError(
            f"{path}: this writes {' or '.join(suffixes)} files; give the output a name ending in "
            f"{' or '.join(suffixes)}."
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"{path}: cannot make its folder {path.parent} ({e.strerror}).") from None
    return path


def _remove_stale_temporaries(folder: Path, max_age_s: float = 3600.0) -> None:
    """Remove what killed writes left in ``folder``: temporaries whose writer is gone (or older than an hour)."""
    now = time.time()
    for entry in folder.glob(f".*{TEMP_MARK}*.tmp"):
        match = _STALE_TEMP.match(entry.name)
        if match is None:
            continue
        try:
            os.kill(int(match.group(1)), 0)
            alive = True
        except ProcessLookupError:
            alive = False
        except (PermissionError, OverflowError, ValueError):
            alive = True
        try:
            if not alive or now - entry.stat().st_mtime > max_age_s:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        except OSError:
            pass


_MODE_PROBE = ".mode"


def _usual_mode(folder: Path) -> int:
    """The permissions a new file gets here (0644 under umask 022), read off a probe file: asking the
    umask means setting it, which is not thread-safe."""
    fd = os.open(folder / _MODE_PROBE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        return os.fstat(fd).st_mode & 0o777
    finally:
        os.close(fd)


def write_atomic(
    path: PathLike,
    write: Callable[[Path], None],
    *,
    protect: Iterable[PathLike] = (),
    suffixes: tuple[str, ...] = (),
    verify: Callable[[Path], None] | None = None,
) -> Path:
    """``write(tmp)`` into a private folder next to ``path``, ``verify(tmp)``, then rename into place.

    The output is checked first (``check_output``). Files ``write`` puts beside ``tmp`` (ONNX external
    data, named after the file) are moved next to ``path`` too, each checked the same way, the main
    file last. Each gets the permissions a new file gets there (the umask's: 0644 under 022). A
    killed write leaves the previous file intact and a ``.NAME.rectvit-partial-PID-*.tmp`` folder,
    which the next write into that folder removes. Errors name ``path``, never the temporary.
    """
    protect = tuple(protect)
    path = check_output(path, protect, suffixes)
    _remove_stale_temporaries(path.parent)
    work = Path(tempfile.mkdtemp(prefix=f".{path.name}{TEMP_MARK}{os.getpid()}-", suffix=".tmp", dir=path.parent))
    try:
        tmp = work / path.name
        try:
            write(tmp)
        except OSError as e:
            raise OSError(e.errno, f"{e.strerror or e} (while writing)", str(path)) from None
        if verify is not None:
            verify(tmp)
        beside = [f for f in work.iterdir() if f.name not in (path.name, _MODE_PROBE)]
        for extra in beside:
            check_output(path.parent / extra.name, protect)
        mode = _usual_mode(work)
        for done in (*beside, tmp):
            os.chmod(done, mode)  # some writers (safetensors) make 0600 files; ours get what a new file gets
            os.replace(done, path.parent / done.name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return path


def write_safetensors(
    tensors: dict[str, torch.Tensor],
    path: PathLike,
    metadata: dict[str, str] | None = None,
    protect: Iterable[PathLike] = (),
) -> Path:
    """Write ``tensors`` to ``path`` as ``.safetensors`` through ``write_atomic`` (never onto ``protect``)."""
    from safetensors.torch import save_file

    def write(tmp: Path) -> None:
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=dict(metadata or {})
        )

    return write_atomic(path, write, protect=protect, suffixes=(".safetensors",))
