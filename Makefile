# The two commands a fresh machine needs. Each creates .venv and installs everything first.
VENV ?= .venv
export MUSELENS_VENV := $(VENV)

.PHONY: demo test env

demo: env  ## the main job: the end-to-end demo on a synthetic museum
	$(VENV)/bin/muselens demo --out demo-output

test: env  ## the test suite (what CI runs): the layer contracts (import-linter), then pytest
	$(VENV)/bin/python scripts/lint_imports.py
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider

env:
	@bash scripts/setup-env.sh
