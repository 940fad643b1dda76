# ganinv — make install | make test | make demo
# PY: the first Python >= 3.11 (pyproject's requires-python) on PATH, newest name first; `make PY=/path/to/python`
# picks another. The venv is made once; delete .venv to start again with another Python.
PY ?= $(shell for p in python3.14 python3.13 python3.12 python3.11 python3 python; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
	&& { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --quiet --disable-pip-version-check
# what the package and `make demo` need; then the test extras too (pytest, s3fs, moto, playwright)
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install install-test test demo clean-demo

install: $(STAMP)

install-test: $(TEST_STAMP)

$(STAMP): pyproject.toml
	@test -d $(VENV) || test -n "$(PY)" || { echo "error: no Python >= 3.11 on PATH (tried python3.14 ..." \
		"python3.11, python3, python): install one, or run make PY=/path/to/python3.11" >&2; exit 2; }
	test -d $(VENV) || $(PY) -m venv $(VENV)
	$(PIP) install --upgrade pip
	@echo "installing torch 2.14.1 and torchvision (large: minutes on a first install)"
	$(PIP) install "torch==2.14.1" "torchvision==0.29.1"
	@echo "installing ganinv and its dependencies"
	$(PIP) install -e .
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	@echo "installing the test extras"
	$(PIP) install -e ".[test]"
	touch $(TEST_STAMP)

test: install-test
	$(BIN)/python -m pytest -q --durations=15

demo: install
	$(BIN)/python -m flows.demo

clean-demo:
	rm -rf demo
