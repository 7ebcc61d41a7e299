# edgetl developer and user entry points. `make demo` and `make test` work on a fresh machine with only Python.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is the one dependency pinned per machine: these builds install from local disk on the project machines.
# Elsewhere, override: make setup TORCH="torch torchvision"
TORCH  ?= torch==2.14.1 torchvision==0.29.1
OUT    ?= runs/demo

export OPENVINO_TELEMETRY ?= 0
export NNCF_CI ?= 1

.PHONY: setup demo test test-slow bench report-check lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

demo: setup  ## fine-tune -> QAT -> export -> bench -> report -> bundle on the built-in digits set, offline
	$(BIN)/edgetl build --config edgetl/configs/demo.yaml --out $(OUT)

test: setup  ## the default test run (fast; real-data tests are marked slow)
	$(BIN)/python -m pytest -q

test-slow: setup  ## real-data tests on ../shared (slow)
	$(BIN)/python -m pytest -q -m slow

bench: setup  ## measured figures for the issues; tables on stdout, JSON in benchmarks/results/
	$(BIN)/python benchmarks/train.py
	$(BIN)/python benchmarks/quantize.py
	$(BIN)/python benchmarks/speedups.py
	$(BIN)/python benchmarks/bench_vs_benchmark_app.py

report-check: setup  ## render a tiny build's report.html in headless Chromium and check the screenshot (REPORT=...: that one)
	$(BIN)/python -m tests.report.render_check $(REPORT)

lint: setup
	$(BIN)/ruff check edgetl tests benchmarks
	$(BIN)/mypy edgetl

clean:
	rm -rf runs .pytest_cache .ruff_cache .mypy_cache benchmarks/results
