#!/usr/bin/env bash
# Every device check in one go, for a session lent a CUDA machine (about 8 minutes on one H100):
#   1. scripts/cuda_check.py    timm parity in fp32 / autocast / half, SDPA kernels, forward_variable, then
#                               tests/test_cuda.py (packed backends, autocast, device resampling vs the CPU)
#   2. scripts/cuda_pack_bench.py   the packed tests, then `python -m bench --device cuda` (section c)
# Each step has its own time limit; a summary line per step comes last and the exit status is non-zero
# if any step failed. Results go to $OUT (the device tool's output folder) or ./gpu-results.
#
#   bash scripts/gpu_session.sh prepare   # here, online: pure-Python test wheels into .gpu-wheels/
#   bash scripts/gpu_session.sh           # there: run the checks (installs .gpu-wheels/ if pytest is missing)
#
# The device machine has no network: what it lacks besides torch (pytest, hypothesis, timm) comes from
# .gpu-wheels/, which the device tool carries (carry: [".gpu-wheels"]).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=.gpu-wheels
# pinned as in requirements-test.txt, without dependencies: pytest, hypothesis and timm (which runs without
# huggingface_hub); pyyaml and safetensors are binary wheels for this machine's Python, used where they fit
PURE="pytest==9.0.3 pluggy iniconfig packaging pygments hypothesis==6.155.2 sortedcontainers timm==1.0.31
pyyaml safetensors==0.8.0 tqdm==4.70.1 typing_extensions"

if [ "${1:-}" = "prepare" ]; then
    rm -rf "$WHEELS" && mkdir -p "$WHEELS"
    # shellcheck disable=SC2086
    $PY -m pip download --no-deps --dest "$WHEELS" $PURE || exit 1
    du -sh "$WHEELS"
    exit 0
fi

out=${OUT:-gpu-results}
mkdir -p "$out"
deps=$(mktemp -d)
if ! $PY -c "import pytest, hypothesis, timm" 2>/dev/null && [ -d "$WHEELS" ]; then
    for wheel in "$WHEELS"/*.whl; do  # one by one: a wheel built for another Python is left out
        name=$(basename "$wheel" | cut -d- -f1)
        $PY -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('${name,,}') is None)" 2>/dev/null ||
            $PY -m pip install --quiet --no-index --no-deps --target "$deps" "$wheel" || true
    done
fi
export PYTHONPATH="src:tests:.:$deps${PYTHONPATH:+:$PYTHONPATH}"
$PY - <<'EOF' | tee "$out/environment.txt"
import importlib, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "device", torch.cuda.get_device_name() if torch.cuda.is_available() else None)
for m in ("pytest", "hypothesis", "timm", "torchvision", "numpy", "safetensors"):
    try:
        print(m, getattr(importlib.import_module(m), "__version__", "?"))
    except Exception as e:
        print(m, "MISSING:", type(e).__name__, e)
EOF

declare -a summary
step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2
    shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$out/$name.txt"
    local rc=${PIPESTATUS[0]}
    summary+=("$name: exit $rc in $((SECONDS - t0)) s (limit $limit s)")
}

step cuda_check 300 $PY scripts/cuda_check.py
step cuda_pack_bench 240 $PY scripts/cuda_pack_bench.py --out "$out/BENCHMARKS_CUDA.md"

echo "---"
failed=0
for line in "${summary[@]}"; do
    echo "$line"
    case $line in *"exit 0 "*) ;; *) failed=1 ;; esac
done
rm -rf "$deps"
exit $failed
