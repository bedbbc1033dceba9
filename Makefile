# `make demo` and `make test` work on a fresh Debian machine with only Python installed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo bench docs test lint typecheck pytest trio-suite trio-oldest kernel-lane nic-lane clean \
	test-asan soak dist-check

# trio's own IO, socket, signal, subprocess and thread tests, run on UringIOManager.
TRIO_SUITE := trio._core._tests.test_io trio._core._tests.test_guest_mode \
	trio._tests.test_socket trio._tests.test_highlevel_socket \
	trio._tests.test_highlevel_open_tcp_listeners trio._tests.test_signals \
	trio._tests.test_subprocess trio._tests.test_threads

# _compat.py: setup.py makes the trio requirement from its TESTED_TRIO (the install metadata).
$(STAMP): pyproject.toml setup.py trio_uring.pth trio_uring/_core/_compat.py $(wildcard _native/*)
	PY=$(PY) scripts/ensure-system-deps
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/python -m trio_uring doctor || true
	$(BIN)/python examples/echo_server.py --demo
	$(BIN)/python examples/zero_copy_sink.py

bench: setup
	$(BIN)/python -m pip install -q uvloop matplotlib
	$(BIN)/python benchmarks/bench.py --update-readme $(BENCH_ARGS)

PY_SOURCES := trio_uring tests examples benchmarks scripts _native/build.py setup.py docs/conf.py
# The same checks run as pre-commit hooks (.pre-commit-config.yaml), with these tools.
lint: setup
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/codespell

typecheck: setup
	$(BIN)/mypy

# The Sphinx site (docs/) into build/docs/html: warnings are errors, every cross-reference inside the
# project must resolve (-n). The tutorial's code blocks and the examples are run by tests/docs/.
docs: setup
	$(BIN)/python -m sphinx -b html -W --keep-going -n -q -E docs build/docs/html

pytest: setup
	$(BIN)/python -m pytest

trio-suite: setup
	$(BIN)/python -m pytest -c tests/trio_suite/pytest.ini --rootdir . -q --pyargs $(TRIO_SUITE)

# The oldest trio of the supported range: our suite and trio's, on it. The range is written once,
# as TESTED_TRIO in trio_uring/_core/_compat.py; ((0, 30), ...) gives 0.30.0 here.
OLDEST_TRIO := $(shell sed -n 's/^TESTED_TRIO = ..\([0-9]*\), \([0-9]*\).*/\1.\2.0/p' trio_uring/_core/_compat.py)
VENV_OLD := .venv-trio-oldest
$(VENV_OLD)/.stamp: $(STAMP)
	@test -n '$(OLDEST_TRIO)' || { echo "no TESTED_TRIO = ((major, minor), ...) in trio_uring/_core/_compat.py" >&2; exit 1; }
	test -x $(VENV_OLD)/bin/python || $(PY) -m venv $(VENV_OLD)
	$(VENV_OLD)/bin/python -m pip install -q --upgrade pip
	$(VENV_OLD)/bin/python -m pip install -q 'trio==$(OLDEST_TRIO)' -e '.[test]'
	touch $@

trio-oldest: $(VENV_OLD)/.stamp
	$(VENV_OLD)/bin/python -m pytest -q tests/core
	$(VENV_OLD)/bin/python -m pytest -c tests/trio_suite/pytest.ini --rootdir . -q --pyargs $(TRIO_SUITE)

# The kernel lane: the zcrx-nodev tests and the core, receiver and socket suites on the
# newest Debian kernel >= 7.1, in a VM. Fails loudly when the VM cannot run, unless
# TRIO_URING_SKIP_KERNEL_LANE=1.
KERNEL_LANE_TESTS := tests/kernel tests/core tests/zerocopy tests/net/test_socket.py \
	tests/net/test_stream_conformance.py tests/reliability/test_isolation.py
kernel-lane: setup
	@if [ "$$TRIO_URING_SKIP_KERNEL_LANE" = 1 ]; then \
		echo "kernel lane SKIPPED (TRIO_URING_SKIP_KERNEL_LANE=1)"; \
	else \
		scripts/kernel-vm python -m pytest -q -s --color=no -p no:cacheprovider -o faulthandler_timeout=300 \
			$(KERNEL_LANE_TESTS); \
	fi

# The NIC lane: the hardware zcrx path (mode="zcrx") on two simulated NICs (netdevsim built
# with scripts/nic/netdevsim-zcrx.patch, simulated header-split DMA into the io_uring area) in
# the kernel lane's VM. Skipped with the kernel lane (TRIO_URING_SKIP_KERNEL_LANE=1).
nic-lane: setup
	@if [ "$$TRIO_URING_SKIP_KERNEL_LANE" = 1 ]; then \
		echo "NIC lane SKIPPED (TRIO_URING_SKIP_KERNEL_LANE=1)"; \
	else \
		scripts/kernel-vm --nic python -m pytest -q -s --color=no -p no:cacheprovider \
			-o faulthandler_timeout=600 --durations=0 tests/nic; \
	fi

# The release artifacts: python -m build makes an sdist and an abi3 wheel; the sdist installs into
# a new venv outside the repo, runs the doctor and an echo over io_uring (scripts/dist-check).
dist-check: setup
	PY=$(PY) PYBIN=$(BIN)/python scripts/dist-check

test: lint typecheck docs pytest test-asan trio-suite trio-oldest kernel-lane nic-lane dist-check

# The native layer under AddressSanitizer + UBSan, built into build/asan/ (the in-place build
# is untouched); fails on a test failure or on any sanitizer report. See scripts/asan-test.
.PHONY: test-asan soak
test-asan: setup
	PY=$(PY) scripts/ensure-asan-deps
	PYBIN=$(CURDIR)/$(BIN)/python scripts/asan-test

# Mixed load on one trio_uring.run for SOAK_SECONDS; fails unless memory, fds and the receive
# buffer pool stay flat. Samples go to build/soak.json. The short version is part of pytest.
SOAK_SECONDS ?= 300
soak: setup
	mkdir -p build
	$(BIN)/python tests/reliability/soak.py --seconds $(SOAK_SECONDS) --json build/soak.json

clean:
	rm -rf $(VENV) $(VENV_OLD) build dist *.egg-info trio_uring/_native*.so trio_uring/_native.c
