"""Build a virtual environment from a pinned requirements file, saying what it installs and how large first.

Called by the Makefile (``make demo``, ``make test``)::

    python3 scripts/make_venv.py DIR REQUIREMENTS --why "what it is for"
    python3 scripts/make_venv.py --plan-only REQUIREMENTS     # print the plan, install nothing

Where no NVIDIA GPU is present, torch's CPU-only wheels (PyTorch's own index, about 0.2 GB) are preferred
over the default index's CUDA build (about 3 GB more of NVIDIA libraries) when that index answers within a
few seconds; otherwise the default index (and any local wheels pip is configured with) is used as it is.
``RECTVIT_TORCH_INDEX`` overrides the choice: a URL to use as the torch index, or ``none`` for the default
index only; ``RECTVIT_CPU_INDEX`` replaces the CPU index's URL (a mirror, or an unreachable one in tests).

Before anything is downloaded, pip resolves the file (``--dry-run --report``, metadata only) and the build
of torch it picked, the package count and the download size are printed; after the install, the installed
torch is checked and its build printed again, with the environment's size on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import venv
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PROBE_TIMEOUT_S = 4.0
ROOT = Path(__file__).resolve().parents[1]


def say(msg: str) -> None:
    print(f"rectvit: {msg}", flush=True)


def has_nvidia_gpu() -> bool:
    """An NVIDIA driver that lists at least one GPU (the only case where the CUDA build of torch pays off)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir() and any(gpus.iterdir()):
        return True
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether ``url`` answers at all within ``timeout`` seconds (any HTTP status counts as an answer)."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/torch/", timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def torch_index(gpu: bool | None = None, env: dict | None = None) -> tuple[str | None, str]:
    """``(extra index URL or None, why)``: where torch should come from on this machine."""
    env = os.environ if env is None else env
    forced = env.get("RECTVIT_TORCH_INDEX", "").strip()
    if forced.lower() == "none":
        return None, "RECTVIT_TORCH_INDEX=none: the default package index only"
    if forced:
        return forced, f"RECTVIT_TORCH_INDEX={forced}"
    if has_nvidia_gpu() if gpu is None else gpu:
        return None, "an NVIDIA GPU is present: the default index's CUDA build of torch"
    cpu_index = env.get("RECTVIT_CPU_INDEX", "").strip() or CPU_INDEX
    if reachable(cpu_index):
        return cpu_index, f"no GPU here: torch's CPU-only wheels from {cpu_index}"
    return None, (
        f"no GPU here, but {cpu_index} did not answer within {PROBE_TIMEOUT_S:g} s: falling back to the "
        "default package index (and local wheels, if pip is configured with any)"
    )


def pip_args(index: str | None) -> list[str]:
    # An extra index, not a replacement: pip picks torch's "+cpu" build there (a local version label sorts
    # above the plain release), and every other package still comes from the index pip is configured with.
    return ["--disable-pip-version-check"] + ([] if index is None else ["--extra-index-url", index])


def resolve(python: str, requirements: Path, index: str | None) -> list[dict]:
    """What ``pip install -r requirements`` would install, from pip's dry-run report (metadata only)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [python, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed", "--report", str(report)]
        # pip's stderr (warnings about the local index set-up) is shown only if the resolution fails
        done = subprocess.run([*cmd, *pip_args(index), "-r", str(requirements)], stderr=subprocess.PIPE, text=True)
        if done.returncode:
            sys.stderr.write(done.stderr)
            raise subprocess.CalledProcessError(done.returncode, cmd)
        return json.loads(report.read_text())["install"]


def download_size(url: str) -> int | None:
    """Bytes of one distribution file: its size on disk (``file:``) or the server's Content-Length."""
    if url.startswith("file:"):
        path = Path(urllib.request.url2pathname(url[len("file:") :]))
        return path.stat().st_size if path.is_file() else None
    try:
        req = urllib.request.Request(url, method="HEAD")
        with urllib.request.urlopen(req, timeout=PROBE_TIMEOUT_S) as r:
            n = r.headers.get("Content-Length")
            return int(n) if n else None
    except (OSError, ValueError):
        return None


def torch_build(items: list[dict]) -> str:
    """A true label for the torch build in a pip report: CPU-only, or CUDA with the NVIDIA libraries it pulls."""
    for item in items:
        meta = item["metadata"]
        if meta["name"].lower() != "torch":
            continue
        version = meta["version"]
        nvidia = [r for r in meta.get("requires_dist") or [] if r.lower().startswith("nvidia-")]
        if "+cpu" in version or (not nvidia and "+cu" not in version):
            return f"torch {version} (CPU-only build)"
        return f"torch {version} (CUDA build: runs on a CPU too, but brings the NVIDIA CUDA libraries)"
    return "no torch"


def _gpu_only(name: str) -> bool:
    name = name.lower()
    return name.startswith(("nvidia-", "cuda-")) or name == "triton"


def plan(python: str, requirements: Path, index: str | None) -> list[dict]:
    """Resolve ``requirements`` and print what will be installed and roughly how large, before downloading."""
    items = resolve(python, requirements, index)
    urls = [i.get("download_info", {}).get("url", "") for i in items]
    with ThreadPoolExecutor(8) as pool:
        sizes = list(pool.map(download_size, urls))
    names = [i["metadata"]["name"] for i in items]
    known = [s for s in sizes if s is not None]
    gpu = sum(s or 0 for n, s in zip(names, sizes) if _gpu_only(n))
    say(f"      {torch_build(items)}")
    unknown = "" if len(known) == len(items) else f", {len(items) - len(known)} of unknown size not counted"
    of_it = f", the NVIDIA/CUDA libraries {gpu / 1e9:.1f} GB of it" if gpu else ""
    size = f"about {sum(known) / 1e9:.2f} GB to download{of_it}{unknown}; on disk 2 to 4 times that"
    say(f"      {len(items)} packages, {size}")
    largest = sorted(((s, n) for n, s in zip(names, sizes) if s), reverse=True)[:5]
    say("      largest: " + ", ".join(f"{n} {s / 1e6:.0f} MB" for s, n in largest))
    return items


def installed_torch(python: str) -> str:
    code = "import torch; print(torch.__version__, torch.version.cuda or '')"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    version, cuda = out[0], (out[1] if len(out) > 1 else "")
    return f"torch {version} ({'CUDA ' + cuda + ' build' if cuda else 'CPU-only build'})"


def disk_size(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 1e9


def build(target: Path, requirements: Path, why: str) -> None:
    say(f"building {target} from {requirements.name} (first run only; later runs reuse it)")
    say(f"[1/4] creating a virtual environment with {sys.executable}")
    shutil.rmtree(target, ignore_errors=True)
    venv.create(target, with_pip=True)
    python = str(target / "bin" / "python")
    index, reason = torch_index()
    say(f"[2/4] resolving {why}; torch source: {reason}")
    plan(python, requirements, index)
    say("[3/4] downloading and installing; pip's progress follows")
    subprocess.run([python, "-m", "pip", "install", *pip_args(index), "-r", str(requirements)], check=True)
    say(f"[4/4] installed {installed_torch(python)}; {disk_size(target):.1f} GB on disk")
    (target / ".ready").touch()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("target", nargs="?", type=Path, help="the environment's folder")
    ap.add_argument("requirements", type=Path)
    ap.add_argument("--why", default="the pinned packages", help="what the environment is for (printed)")
    ap.add_argument("--plan-only", action="store_true", help="print what would be installed; install nothing")
    args = ap.parse_args(argv)
    if args.plan_only:
        index, reason = torch_index()
        say(f"torch source: {reason}")
        plan(sys.executable, args.requirements, index)
        return 0
    if args.target is None:
        ap.error("the environment's folder is required unless --plan-only")
    target = args.target
    if (target / ".ready").is_file():
        say(f"using {target} (built from {args.requirements.name}; delete it to rebuild)")
    else:
        try:
            build(target, args.requirements, args.why)
        except (subprocess.CalledProcessError, OSError, KeyboardInterrupt) as e:
            shutil.rmtree(target, ignore_errors=True)
            say(f"building {target} failed ({e}); nothing was kept. Run the same make command again to retry.")
            return 1
    python = str(target / "bin" / "python")
    cmd = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
    subprocess.run([*cmd, "--no-build-isolation", "-e", str(ROOT)], check=True, stdout=subprocess.DEVNULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
