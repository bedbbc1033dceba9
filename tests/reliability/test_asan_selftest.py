"""Self-test of the ``make test-asan`` harness: a known memory error must be reported.

A sanitizer harness that silently stopped instrumenting (the normal build imported instead of
the sanitized one, the runtime not preloaded, reports going nowhere) would still pass every
test. So this provokes one out-of-bounds write and one misaligned store in a child process,
through the real native entry points, and expects the sanitizer to stop that child.

It runs only when the sanitized module is the one imported (``scripts/asan-test``); under a
normal run it is skipped, because without ASan the overrun would really corrupt the heap.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio_uring._native as native

pytestmark = pytest.mark.skipif(
    "/build/asan/" not in str(Path(native.__file__)) or "libasan" not in os.environ.get("LD_PRELOAD", ""),
    reason="needs the sanitized native module: run `make test-asan`",
)

# tu_zcrx_fill_rqes writes rqes[(tail + i) & mask]: a mask larger than the array writes past
# its end. 64 entries are 1 KiB, a malloc'd block (PYTHONMALLOC=malloc) with ASan redzones.
_OVERFLOW = """
from trio_uring._native import ffi, lib
rqes = ffi.new("struct tu_zcrx_rqe[64]")
offs = ffi.new("uint64_t[2]", [0, 0])
lens = ffi.new("uint32_t[2]", [1, 1])
lib.tu_zcrx_fill_rqes(rqes, 127, 63, 0, 4096, offs, lens, 2)
print("survived")
"""

# The same writer handed an rqe array one byte off its 8-byte alignment: UBSan's alignment check.
_MISALIGNED = """
from trio_uring._native import ffi, lib
raw = ffi.new("char[4096]")
rqes = ffi.cast("struct tu_zcrx_rqe *", raw + 1)
offs = ffi.new("uint64_t[1]", [0])
lens = ffi.new("uint32_t[1]", [1])
lib.tu_zcrx_fill_rqes(rqes, 7, 0, 0, 4096, offs, lens, 1)
print("survived")
"""


def _run(code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # Reports to stderr for this child only: the harness's log_path collects reports as
    # failures, and this one is expected.
    env["ASAN_OPTIONS"] = "detect_leaks=0:abort_on_error=1"
    env["UBSAN_OPTIONS"] = "print_stacktrace=1:halt_on_error=1"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_heap_overflow_is_reported() -> None:
    proc = _run(_OVERFLOW)
    assert proc.returncode != 0, proc.stdout
    assert "survived" not in proc.stdout
    assert "AddressSanitizer: heap-buffer-overflow" in proc.stderr, proc.stderr[-2000:]
    assert "tu_zcrx_fill_rqes" in proc.stderr


def test_misaligned_store_is_reported() -> None:
    proc = _run(_MISALIGNED)
    if "runtime error" not in proc.stderr and "survived" in proc.stdout:
        pytest.skip("built without UBSan (scripts/asan_build.py fell back to ASan only)")
    assert proc.returncode != 0, proc.stdout
    assert "misaligned address" in proc.stderr, proc.stderr[-2000:]
