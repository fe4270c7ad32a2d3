# cytolt: every target installs what it needs first (scripts/setup.sh is idempotent and fast when done).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONHASHSEED := 0

.PHONY: setup test demo bench bench-peers lint format clean help

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

setup:  ## create .venv with the pinned stack (mmcv wheel built once, cached in ~/.cache/cytolt/wheels)
	@scripts/setup.sh

test: setup  ## ruff, then the whole test suite (napari tests under Xvfb)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m pytest -q

demo: setup  ## run the main job on built-in synthetic data; outputs in demo_out/
	$(VENV)/bin/cytolt demo --out demo_out

bench: demo  ## run every benchmark in bench/ (headline ratio last); the demo's model first (reused when there)
	@set -e; for b in bench/bench_*.py plugins/napari-cytolt/bench/bench_*.py; do echo "== $$b"; $(PY) $$b; done

bench-peers: demo  ## side by side with tiatoolbox, MONAI, tiffslide, SAHI, faster-coco-eval, in .venv-peers (scripts/setup_peers.sh)
	@scripts/setup_peers.sh
	@set -e; for b in bench/peers/bench_*.py; do echo "== $$b"; .venv-peers/bin/python $$b; done

lint: setup  ## ruff check and format check only
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: setup  ## apply ruff fixes and formatting
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

clean:  ## remove outputs (keeps .venv and the wheel cache)
	rm -rf demo_out .pytest_cache .ruff_cache
