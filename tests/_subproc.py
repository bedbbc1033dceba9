"""Run Python code in a child process, optionally under a seccomp filter or without caps."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# Installs a seccomp filter that fails io_uring_setup (syscall 425 on every 64-bit arch
# with the generic table, x86-64 included) with the given errno, then runs the payload.
_SECCOMP = """
import ctypes, struct
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
def ins(code, jt, jf, k):
    return struct.pack("=HBBI", code, jt, jf, k)
prog = b"".join([
    ins(0x20, 0, 0, 0),              # ld [nr]
    ins(0x15, 0, 1, 425),            # jeq io_uring_setup
    ins(0x06, 0, 0, 0x00050000 | {errno}),  # ret ERRNO
    ins(0x06, 0, 0, 0x7fff0000),     # ret ALLOW
])
buf = ctypes.create_string_buffer(prog)
fprog = struct.pack("=HxxxxxxQ", 4, ctypes.addressof(buf))
fbuf = ctypes.create_string_buffer(fprog)
assert libc.prctl(38, 1, 0, 0, 0) == 0            # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.addressof(fbuf), 0, 0) == 0, ctypes.get_errno()  # SECCOMP_MODE_FILTER
"""


def run_python(
    code: str, *, seccomp_errno: int | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    prelude = _SECCOMP.format(errno=seccomp_errno) if seccomp_errno is not None else ""
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True, text=True, timeout=timeout, check=False,
    )
