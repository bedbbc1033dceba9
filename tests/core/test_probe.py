"""The capability probe and the clear errors when io_uring cannot be used."""

from __future__ import annotations

import errno
import subprocess
import sys

import pytest

import trio_uring
from tests._subproc import run_python
from trio_uring._core._probe import kernel_version
from trio_uring._core._ring import Ring


def test_probe_reports_this_machine() -> None:
    report = trio_uring.probe()
    assert report.usable and report.reason is None
    assert report.kernel_version >= (5, 19)
    assert {"RECV", "SEND", "ACCEPT", "POLL_ADD", "ASYNC_CANCEL"} <= report.opcodes
    assert "EXT_ARG" in report.features
    # the same answer the IO manager uses to decide on wait coalescing
    with Ring(8) as ring:
        assert ("MIN_TIMEOUT" in report.features) == ring.can_coalesce
    assert report.multishot_recv and report.multishot_accept and report.buffer_rings
    text = str(report)
    assert "io_uring          usable" in text and "zcrx" in text


def test_kernel_version_parsing() -> None:
    assert kernel_version("6.18.44-1-amd64") == (6, 18, 44)
    assert kernel_version("7.2.13+deb14-amd64") == (7, 2, 13)
    assert kernel_version("6.1") == (6, 1)


def test_doctor_cli() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "trio_uring", "doctor"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "multishot recv" in out.stdout


@pytest.mark.parametrize(
    ("err", "words"),
    [
        (errno.EPERM, "seccomp"),
        (errno.ENOSYS, "not implemented"),
        (errno.ENOMEM, "RLIMIT_MEMLOCK"),
    ],
)
def test_unavailable_io_uring_is_explained(err: int, words: str) -> None:
    res = run_python(
        """
        import trio_uring
        from trio_uring._core._ring import Ring
        r = trio_uring.probe()
        assert not r.usable, r
        print("REASON", r.reason)
        print("REMEDY", r.remedy)
        try:
            Ring()
        except trio_uring.UringUnavailable as exc:
            print("RAISED", exc.errno, exc)
        out = __import__("subprocess").run([__import__("sys").executable, "-m", "trio_uring", "doctor"],
                                           capture_output=True, text=True)
        print("DOCTOR", out.returncode, out.stdout.replace(chr(10), " | "))
    """,
        seccomp_errno=err,
    )
    assert res.returncode == 0, res.stderr
    assert words in res.stdout
    assert f"RAISED {err} " in res.stdout
    assert "DOCTOR 1 " in res.stdout and "UNAVAILABLE" in res.stdout
