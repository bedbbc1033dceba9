"""Exceptions shared by every layer, and the errno → message mapping for kernel errors."""

from __future__ import annotations

import errno as _errno
import os
from typing import Self

import trio


class Unavailable(RuntimeError):
    """Something this machine or process lacks: ``reason`` says what, ``remedy`` what to
    change, ``errno`` the kernel's answer when there was one."""

    def __init__(self, reason: str, remedy: str = "", *, errno: int | None = None) -> None:
        self.reason = reason
        self.remedy = remedy
        self.errno = errno
        super().__init__(reason if not remedy else f"{reason}. To fix: {remedy}")

    def fresh(self) -> Self:
        """A new exception like this one: a cached error is raised again without its old
        traceback (and nothing that traceback references)."""
        return type(self)(self.reason, self.remedy, errno=self.errno)


class UringUnavailable(Unavailable):
    """io_uring cannot be used here; ``reason`` says why and ``remedy`` what to change."""


#: What to change when a seccomp filter (or the sysctl) refuses io_uring syscalls.
SECCOMP_REMEDY = (
    "run with a seccomp profile that allows io_uring_setup, io_uring_enter and io_uring_register "
    "(Docker's default profile blocks them: docker run --security-opt seccomp=<profile that allows "
    "them>), and check that sysctl kernel.io_uring_disabled is 0"
)


def refused_error(syscall: str, err: int, detail: str = "") -> UringUnavailable:
    """Why a ring could not be made usable: ``syscall`` (e.g. ``io_uring_enter``) failed with ``err``.

    Used for the syscalls after a successful setup (registering the eventfd, the first
    enter): seccomp filters can refuse each io_uring syscall on its own.
    """
    code = -err if err < 0 else err
    what = f"{syscall} ({detail})" if detail else syscall
    if code in (_errno.EPERM, _errno.EACCES):
        return UringUnavailable(
            f"{what} was refused with {_errno.errorcode[code]}: a seccomp filter blocks it "
            "(container runtimes' default profiles do)",
            errno=code,
            remedy=SECCOMP_REMEDY,
        )
    return UringUnavailable(f"{what} failed while setting up the ring: {os.strerror(code)}", errno=code)


class RingClosedError(trio.ClosedResourceError):
    """The io_uring ring was closed (or belongs to the parent of a forked process)."""


def errno_error(err: int, what: str = "") -> OSError:
    """The ``OSError`` for an errno (or a negative CQE result), as the stdlib raises it:
    ``OSError(code, strerror)``, with ``what`` failed in front when given."""
    code = -err if err < 0 else err
    text = os.strerror(code)
    return OSError(code, f"{what}: {text}" if what else text)


def kernel_error(err: int, op: str, detail: str = "") -> OSError:
    """An ``OSError`` for a negative result of ``op``, naming the op (and ``detail``)."""
    code = -err if err < 0 else err
    what = f"{op} ({detail})" if detail else op
    if code == _errno.EEXIST and op == "io_uring_enter":
        return OSError(
            code,
            f"{what}: ring used from a thread other than the one that created it "
            "(IORING_SETUP_SINGLE_ISSUER); every ring belongs to one thread",
        )
    return errno_error(code, what)


def setup_error(err: int) -> UringUnavailable:
    """Explain why ``io_uring_setup`` failed, reading the system state that decides it."""
    code = -err if err < 0 else err
    if code == _errno.ENOSYS:
        return UringUnavailable(
            "io_uring_setup is not implemented by this kernel (Linux < 5.1 or CONFIG_IO_URING=n)",
            errno=code,
            remedy="run on a kernel built with io_uring (Linux >= 6.1 recommended)",
        )
    if code == _errno.EPERM:
        disabled = read_sysctl("kernel/io_uring_disabled")
        if disabled == "2":
            return UringUnavailable(
                "io_uring is disabled for every process by sysctl kernel.io_uring_disabled=2",
                errno=code,
                remedy="sysctl -w kernel.io_uring_disabled=0 (as root)",
            )
        if disabled == "1":
            return UringUnavailable(
                "io_uring is restricted by sysctl kernel.io_uring_disabled=1 to CAP_SYS_ADMIN "
                "and members of the group in kernel.io_uring_group",
                errno=code,
                remedy="add this user to that group, or sysctl -w kernel.io_uring_disabled=0",
            )
        return UringUnavailable(
            "io_uring_setup was refused with EPERM although kernel.io_uring_disabled allows it: "
            "a seccomp filter blocks it (container runtimes' default profiles do)",
            errno=code,
            remedy=SECCOMP_REMEDY,
        )
    if code == _errno.ENOMEM:
        return UringUnavailable(
            "the kernel could not allocate the ring: RLIMIT_MEMLOCK is too low "
            "(kernels before 5.12 charge rings to it) or memory is exhausted",
            errno=code,
            remedy="raise the locked-memory limit (ulimit -l) or use a smaller ring",
        )
    if code in (_errno.EMFILE, _errno.ENFILE):
        return UringUnavailable(
            "no file descriptor is free for the ring", errno=code, remedy="close fds or raise ulimit -n"
        )
    return UringUnavailable(f"io_uring_setup failed: {os.strerror(code)}", errno=code)


def read_sysctl(name: str) -> str | None:
    try:
        with open(f"/proc/sys/{name}") as f:
            return f.read().strip()
    except OSError:
        return None
