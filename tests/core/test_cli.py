"""``python -m trio_uring``: exit codes and a reader that leaves early."""

from __future__ import annotations

import subprocess
import sys

from trio_uring.__main__ import main


def test_doctor_fails_for_an_interface_that_does_not_exist() -> None:
    assert main(["doctor", "--interface", "nosuch0"]) == 1


def test_doctor_on_an_existing_interface_exits_zero() -> None:
    assert main(["doctor", "--interface", "lo"]) == 0


def test_doctor_survives_a_closed_pipe() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "trio_uring", "doctor"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader is gone before the doctor writes (like `doctor | head -0`)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) in (0, 1)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
