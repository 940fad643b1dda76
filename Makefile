# ganinv — make install | make test | make demo
# PY: the first Python >= 3.11 (pyproject's requires-python) on PATH, newest name first; `make PY=/path/to/python`
# picks another. The venv is made once; delete .venv to start again with another Python.
PY ?= $(shell for p in python3.14 python3.13 python3.12 python3.11 python3 python; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
# --no-compile: no .pyc for all ~20k installed modules (~50 s of CPU here); Python writes those it imports, once
# (`make test` makes sure it may: PYCACHE below)
PIP := $(BIN)/python -m pip --quiet --disable-pip-version-check
INSTALL := $(PIP) install --no-compile
# what the package and `make demo` need; then the test extras too (pytest, pytest-xdist, s3fs, moto, playwright)
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
# `make test` runs the suite on this many pytest-xdist workers (CI has 2 cores; `make test TEST_WORKERS=0`: one
# process), a module per worker at a time, longest first (tests/conftest.py)
TEST_WORKERS ?= 2

.PHONY: install install-test test demo clean-demo

install: $(STAMP)

install-test: $(TEST_STAMP)

# $(call venv_with,EXTRAS): the venv, torch, and ganinv editable with EXTRAS in one pip run (an editable install
# builds a wheel: `make test` on a fresh clone builds it once, not once for the package and again for its extras)
define venv_with
	@test -d $(VENV) || test -n "$(PY)" || { echo "error: no Python >= 3.11 on PATH (tried python3.14 ..." \
		"python3.11, python3, python): install one, or run make PY=/path/to/python3.11" >&2; exit 2; }
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(PIP) install --upgrade pip
	@echo "installing torch 2.14.1 and torchvision (large: minutes on a first install)"
	$(INSTALL) "torch==2.14.1" "torchvision==0.29.1"
	@echo "installing ganinv and its dependencies$(if $(1), and the test extras)"
	$(INSTALL) -e ".$(1)"
endef

$(STAMP): pyproject.toml
	$(call venv_with,)
	touch $(STAMP)

$(TEST_STAMP): pyproject.toml
	$(call venv_with,[test])
	touch $(STAMP) $(TEST_STAMP)

# The suite starts hundreds of Python processes (CLI commands, Prefect servers, Dask workers). Where the environment
# sets PYTHONDONTWRITEBYTECODE (common in containers; set on this project's CI-like machine) no bytecode is kept, and
# each one compiled torch's, Prefect's and our modules from source again: a Dask worker's imports took 11 s of CPU,
# 5 s from bytecode. So the suite's processes write their bytecode once, under the venv (.venv/pycache, not into the
# source tree), and read it from there.
PYCACHE := PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX=$(abspath $(VENV))/pycache

test: install-test
	$(PYCACHE) $(BIN)/python -m pytest -q --durations=15 $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) \
		--dist loadfile --no-loadscope-reorder)

# the demo's processes (the command, the Prefect server, two Dask workers) keep their bytecode as the suite's do:
# 224 s instead of 258 s for the 256-face demo on the 2-core machine (2026-12-07), before it was cut to 160 faces
demo: install
	$(PYCACHE) $(BIN)/python -m flows.demo

clean-demo:
	rm -rf demo
