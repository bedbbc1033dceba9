"""cffi (API mode) build of ``trio_uring._native`` against the system liburing.

``tu_api.h`` is both compiled and used as the cdef, so the C declarations exist once.
Kernel constants are taken from the headers at build time (``#define NAME ...``), never
retyped here; ``CONSTANTS`` lists the ones the Python layer reads (as ``lib.NAME``, never
retyping a value), and only those.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cffi

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

TYPES = """
typedef int... socklen_t;
struct iovec { void *iov_base; size_t iov_len; };
struct msghdr {
    void *msg_name; socklen_t msg_namelen; struct iovec *msg_iov; size_t msg_iovlen;
    void *msg_control; size_t msg_controllen; int msg_flags; ...;
};
struct __kernel_timespec { int64_t tv_sec; long long tv_nsec; };
"""

CONSTANTS = """
IORING_SETUP_CQSIZE IORING_SETUP_SUBMIT_ALL IORING_SETUP_COOP_TASKRUN IORING_SETUP_TASKRUN_FLAG
IORING_SETUP_CQE32 IORING_SETUP_SINGLE_ISSUER IORING_SETUP_DEFER_TASKRUN TU_IORING_SETUP_CQE_MIXED
IORING_FEAT_NODROP IORING_FEAT_FAST_POLL IORING_FEAT_EXT_ARG IORING_FEAT_NATIVE_WORKERS
IORING_FEAT_CQE_SKIP TU_IORING_FEAT_RECVSEND_BUNDLE TU_IORING_FEAT_MIN_TIMEOUT IORING_SQ_CQ_OVERFLOW
TU_IORING_CQE_F_BUFFER TU_IORING_CQE_F_MORE TU_IORING_CQE_F_NOTIF TU_IORING_CQE_F_BUF_MORE
IORING_OP_NOP IORING_OP_POLL_ADD IORING_OP_SENDMSG IORING_OP_TIMEOUT IORING_OP_ACCEPT
IORING_OP_ASYNC_CANCEL IORING_OP_CONNECT IORING_OP_CLOSE IORING_OP_SEND IORING_OP_RECV
IORING_OP_SHUTDOWN IORING_OP_MSG_RING IORING_OP_SEND_ZC TU_IORING_OP_RECV_ZC
TU_ZCRX_REG_NODEV TU_IORING_ZCRX_AREA_SHIFT
""".split()  # noqa: SIM905 - a word list reads best here

ffibuilder = cffi.FFI()
ffibuilder.cdef(
    TYPES + (HERE / "tu_api.h").read_text() + "\n".join(f"#define {name} ..." for name in CONSTANTS)
)
ffibuilder.set_source(
    "trio_uring._native",
    '#include "tu.h"\n',
    sources=[str(p.relative_to(ROOT)) for p in sorted(HERE.glob("*.c"))],
    include_dirs=[str(HERE.relative_to(ROOT))],
    libraries=["uring"],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter"],
)

#: The one line a build without liburing's headers stops with.
MISSING_LIBURING = (
    "trio-uring needs liburing's headers (liburing.h) to build its native module: install "
    "liburing-dev (Debian/Ubuntu) or liburing-devel (Fedora), then retry"
)
MISSING_COMPILER = (
    "trio-uring builds a C extension and found no working C compiler: install gcc "
    "(Debian/Ubuntu: build-essential and python3-dev; Fedora: gcc and python3-devel), then retry"
)


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the compiler's own output during a probe: its error is not the user's."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _compiles(compiler: Any, source: str, include_dirs: list[str]) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "probe.c")
        path.write_text(source)
        try:
            with _quiet_stderr():
                compiler.compile([str(path)], output_dir=tmp, include_dirs=include_dirs)
        except Exception:
            return False
    return True


def check_build_deps(
    compiler: Any, include_dirs: list[str] | None = None, header: str = "liburing.h"
) -> None:
    """Stop the build with one actionable line, before gcc's own errors, when a compiler or
    liburing's headers are missing. ``compiler`` is setuptools' ``build_ext.compiler``."""
    dirs = list(include_dirs or [])
    if not _compiles(compiler, "int main(void) { return 0; }\n", dirs):
        raise SystemExit(f"error: {MISSING_COMPILER}")
    if not _compiles(compiler, f"#include <{header}>\nint main(void) {{ return 0; }}\n", dirs):
        raise SystemExit(f"error: {MISSING_LIBURING}")


if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
