# motion-align: `make test` and `make demo` work on a fresh machine (they create .venv first).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Installed before anything that depends on torch: an unpinned torch pulls GBs of CUDA packages.
TORCH_PIN ?= torch==2.13.0
PYTEST_WORKERS ?= 2

.PHONY: install test test-slow lint format demo ablations clean

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed

test: install
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile -q

test-slow: install
	$(BIN)/pytest -m slow -q

lint: install
	$(BIN)/ruff check motion_align tokenizer tests recipes benchmarks experiments
	$(BIN)/ruff format --check motion_align tokenizer tests recipes benchmarks experiments

format: install
	$(BIN)/ruff format motion_align tokenizer tests recipes benchmarks experiments
	$(BIN)/ruff check --fix motion_align tokenizer tests recipes benchmarks experiments

# `make demo DEMO_ARGS="--reference path/to/HumanML3D"` also measures the tokenizer on real HumanML3D clips
DEMO_ARGS ?=

demo: install
	$(BIN)/motion-align demo --out outputs/demo $(DEMO_ARGS)

# docs/RESULTS.md's ablation tables, all of them (one table: `python experiments/ablations.py <table>`);
# needs `make demo` and the demo's LLaMA policy (`motion-align demo --out outputs/demo --policy-family llama`)
ablations: install
	$(BIN)/python experiments/ablations.py all --demo outputs/demo --out outputs/ablations

clean:
	rm -rf outputs build *.egg-info .pytest_cache
