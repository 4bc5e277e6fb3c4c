# Two entry points: `make demo` and `make test`. Both build .venv from this repository's own files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT ?= demo_output

.PHONY: demo test test-fast venv clean bench plan mmaction-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files make re-runs skip the install when pyproject.toml has not changed.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# The test venv has the [ray] extra (~285 MB; the Ray executor is tested on a local Ray instance),
# triton from the [test] extra (~290 MB wheel; its interpreter runs the Triton TV-L1 kernels on the
# CPU) and a CPU torch for the torch and triton TV-L1 tests. torch is pinned so pip takes the CPU wheel this
# project's machines carry; an unpinned torch would pull gigabytes of CUDA packages. Elsewhere,
# point pip at PyTorch's CPU index: make test TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,ray]"
	$(BIN)/python -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	touch $@ $(VENV)/.installed

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/python -m kinetics_prep demo --out $(DEMO_OUT)

# A separate training-side venv for tests/test_mmaction_packed.py: mmaction2 1.x as users install
# it (mmengine, mmcv-lite<2.2, CPU torch, lmdb); our package reaches it only through PYTHONPATH,
# as with `pip install --no-deps`. Building it takes ~3 min here (2 cores, local package mirror).
MMACTION_VENV := .venv-mmaction
$(MMACTION_VENV)/.installed: Makefile
	rm -rf $(MMACTION_VENV)
	$(PYTHON) -m venv $(MMACTION_VENV)
	$(MMACTION_VENV)/bin/python -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(MMACTION_VENV)/bin/python -m pip install --quiet "mmaction2==1.2.0" "mmengine>=0.10,<1" "mmcv-lite>=2.0,<2.2" lmdb
	touch $@

mmaction-venv: $(MMACTION_VENV)/.installed

test: $(VENV)/.installed-test $(MMACTION_VENV)/.installed
	$(BIN)/python -m pytest -q

# For development: the suite without the slow, Ray, Triton and mmaction2 tests (markers in
# pyproject.toml); it needs no .venv-mmaction. `make test` stays the whole suite and CI's command.
test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -q -m "not slow and not ray and not triton and not mmaction"

bench: $(VENV)/.installed-test
	$(BIN)/python benchmarks/bench_resize.py

plan: $(VENV)/.installed-test
	$(BIN)/python benchmarks/plan.py

clean:
	rm -rf $(VENV) $(MMACTION_VENV) $(DEMO_OUT) .pytest_cache
