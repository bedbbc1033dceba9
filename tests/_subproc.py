"""Run Python code in a child process, optionally under a seccomp filter or without caps."""

from __future__ import annotations

import subprocess
import sys
import textwrap

#: io_uring syscall numbers: the same on every 64-bit arch with the generic table (x86-64 too).
SYSCALLS = {"setup": 425, "enter": 426, "register": 427}

# Installs a seccomp filter that fails the chosen io_uring syscalls with the given errnos,
# then runs the payload.
_SECCOMP = """
import ctypes, struct
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
def ins(code, jt, jf, k):
    return struct.pack("=HBBI", code, jt, jf, k)
prog = [ins(0x20, 0, 0, 0)]                         # ld [nr]
for nr, err in {rules!r}:
    prog.append(ins(0x15, 0, 1, nr))                # jeq nr, next, skip the ret
    prog.append(ins(0x06, 0, 0, 0x00050000 | err))  # ret ERRNO
prog.append(ins(0x06, 0, 0, 0x7fff0000))            # ret ALLOW
buf = ctypes.create_string_buffer(b"".join(prog))
fprog = struct.pack("=HxxxxxxQ", len(prog), ctypes.addressof(buf))
fbuf = ctypes.create_string_buffer(fprog)
assert libc.prctl(38, 1, 0, 0, 0) == 0            # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.addressof(fbuf), 0, 0) == 0, ctypes.get_errno()  # SECCOMP_MODE_FILTER
del ctypes, struct, libc, ins, prog, buf, fprog, fbuf
"""


def run_python(
    code: str,
    *,
    refuse: dict[str, int] | None = None,
    seccomp_errno: int | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter.

    ``refuse`` maps ``"setup"``, ``"enter"``, ``"register"`` (the io_uring syscalls) to the
    errno a seccomp filter answers them with; ``seccomp_errno`` is short for refusing setup.
    """
    rules = dict(refuse or {})
    if seccomp_errno is not None:
        rules.setdefault("setup", seccomp_errno)
    unknown = set(rules) - set(SYSCALLS)
    if unknown:
        raise ValueError(f"unknown io_uring syscalls {sorted(unknown)}; known: {sorted(SYSCALLS)}")
    prelude = _SECCOMP.format(rules=[(SYSCALLS[k], v) for k, v in rules.items()]) if rules else ""
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
