# `make demo` and `make test` work on a fresh Debian machine with only Python installed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test lint typecheck pytest clean

$(STAMP): pyproject.toml setup.py $(wildcard _native/*)
	PY=$(PY) scripts/ensure-system-deps
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/python -m trio_uring doctor || true
	$(BIN)/python examples/ring_echo.py

lint: setup
	$(BIN)/ruff check trio_uring tests examples _native/build.py

typecheck: setup
	$(BIN)/mypy

pytest: setup
	$(BIN)/python -m pytest

test: lint typecheck pytest

clean:
	rm -rf $(VENV) build *.egg-info trio_uring/_native*.so trio_uring/_native.c
