#!/usr/bin/env bash
# The GPU check of issue 20, at most 8 minutes on a CUDA machine that has torch: training stages
# 1-3 on a CLICIDE-sized synthetic museum, the trunk's fp16 CUDA graph against eager fp32, ONNX
# Runtime's CUDA provider (when installed) and `muselens bench streams` at 64 x 30 FPS, all in one
# JSON. The work is done by muselens.benchmarks.gpu_check (see its docstring); this script picks the
# Python, caps the time and passes the flags on.
#
#   bash benchmarks/gpu_check.sh [--out gpu-check.json] [--dry-run] [any flag of gpu_check.py]
#
# MUSELENS_VENV (default .venv, as the Makefile's; relative to the repository) names the virtual
# environment to use when it exists, else python3; GPU_CHECK_SECONDS (default 480) is the cap,
# enforced with `timeout`. Relative paths in the flags are relative to the current folder.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)

venv=${MUSELENS_VENV:-.venv}
case "$venv" in
    /*) ;;
    *) venv="$root/$venv" ;;  # relative to the repository, as scripts/setup-env.sh makes it
esac
if [ -x "$venv/bin/python" ]; then
    python="$venv/bin/python"
else
    python=python3
fi
if ! "$python" -c "import muselens.benchmarks" 2>/dev/null; then
    echo "gpu_check.sh: error: muselens is not importable by $python; install it there first" \
         "(pip install -e '.[train]') or set MUSELENS_VENV to an environment that has it" >&2
    exit 2
fi

cap=${GPU_CHECK_SECONDS:-480}
# the Python side plans its parts to end 15 s before the cap (a quarter of a short one), and writes
# its JSON after every part
budget=$((cap > 60 ? cap - 15 : cap * 3 / 4))
if [ "$budget" -le 0 ]; then
    echo "gpu_check.sh: error: GPU_CHECK_SECONDS=$cap leaves no time" >&2
    exit 2
fi
# SIGTERM at the cap (the JSON then marks the part in progress), SIGKILL 20 s later
exec timeout --kill-after=20 "$cap" "$python" -m muselens.benchmarks.gpu_check --budget "$budget" "$@"
