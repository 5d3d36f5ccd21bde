# Two entry points on a fresh machine: `make test` and `make demo`. Both create .venv when missing.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
export HF_HUB_OFFLINE=1
export HF_DATASETS_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
export TOKENIZERS_PARALLELISM=false
export MPLBACKEND=Agg

.PHONY: install test demo table docs export clean-nbs lint mutants

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# CPU path: torch's CPU wheel first (requirements-cpu.txt), then the package with its dev extra under the tested
# version set. torchvision is never installed (see README: its only reachable wheels break `from trl import GRPOTrainer`).
$(STAMP): $(BIN)/python pyproject.toml requirements-cpu.txt constraints-dev.txt
	$(BIN)/python -m pip install -q -r requirements-cpu.txt
	$(BIN)/python -m pip install -q -c constraints-dev.txt -e ".[dev]"
	@if $(BIN)/python -c "import importlib.util,sys; sys.exit(importlib.util.find_spec('torchvision') is None)"; then \
	  echo "torchvision got installed as a dependency; removing it (breaks TRL on the CPU path)"; \
	  $(BIN)/python -m pip uninstall -y -q torchvision; fi
	touch $(STAMP)

# The browser test drives Debian's Chromium through Playwright (the browser is never downloaded by a test tool).
BROWSER := /usr/bin/chromium
$(BROWSER):
	@if command -v apt-get >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "no apt-get: install Chromium yourself (tests/test_browser.py will fail until /usr/bin/chromium exists)"; fi

install: $(STAMP)

# One BLAS/OpenMP thread per process: the models are tiny, and several test processes (kernels, torchrun ranks,
# subprocess CLIs) share 2 cores; oversubscribed threads made steps up to 40x slower when measured here.
test: $(STAMP) $(BROWSER)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests

demo: $(STAMP)
	$(BIN)/vrft-aug demo

# The CPU paper table: every preset x SynthMed cells, fundus and lesion x 3 seeds, two one-thread workers; the report
# (results.md, CSVs, reward and test curves) goes to results/cpu/, the runs to runs/table/.
table: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/vrft-aug table --jobs 2

# The documentation site in _docs/ (open _docs/index.html): every notebook executed (`#| slow` cells skipped; cached in
# _proc/docs_exec/ until the notebook or the library changes) and rendered, plus an API page per module. Sphinx + MyST-NB,
# because nbdev's Quarto builder cannot be installed on these machines (see README). `make docs DOCS_FLAGS=--slow` runs
# the slow cells too (a few minutes more).
DOCS_FLAGS ?=
docs: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python docs/build_site.py --out _docs $(DOCS_FLAGS)

# Mutation check (not part of `make test`): plants each bug listed in bench/mutants.py in a scratch copy of the library
# and runs the tests that must catch it; fails when one survives. A few minutes.
mutants: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python bench/mutants.py

export: $(STAMP)
	$(BIN)/nbdev-export && $(BIN)/nbdev-clean
