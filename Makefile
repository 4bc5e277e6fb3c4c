# Two entry points: `make demo` and `make test`. Both build .venv from this repository's own files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo_output

.PHONY: demo test venv clean bench plan

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files make re-runs skip the install when pyproject.toml has not changed.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# Tests include the Ray executor on a local Ray instance, so the test venv has the [ray] extra
# (~285 MB; a fresh `make test` install takes about 1.5 min here). Without Ray, its tests skip
# outside CI and fail under CI=1.
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,ray]"
	touch $@ $(VENV)/.installed

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/python -m kinetics_prep demo --out $(DEMO_OUT)

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench_resize.py

plan: $(VENV)/.installed-test
	$(BIN)/python benchmarks/plan.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
