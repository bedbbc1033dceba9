"""Exceptions shared by every layer, and the errno → message mapping for kernel errors."""

from __future__ import annotations

import errno as _errno
import os

import trio


class UringUnavailable(RuntimeError):
    """io_uring cannot be used here; ``reason`` says why and ``remedy`` what to change."""

    def __init__(self, reason: str, *, errno: int | None = None, remedy: str = "") -> None:
        self.reason = reason
        self.errno = errno
        self.remedy = remedy
        text = reason if not remedy else f"{reason}. To fix: {remedy}"
        super().__init__(text)


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


def fresh(exc: UringUnavailable) -> UringUnavailable:
    """A new exception like ``exc``: a cached error is raised again without its old traceback."""
    return UringUnavailable(exc.reason, errno=exc.errno, remedy=exc.remedy)


class RingClosedError(trio.ClosedResourceError):
    """The io_uring ring was closed (or belongs to the parent of a forked process)."""


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
    return OSError(code, f"{what}: {os.strerror(code)}")


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
