"""Every example in examples/ runs, over loopback, in a few seconds, and says what it shows.

Each server example has a ``--demo`` mode that serves on a free port, talks to itself with
bounded loops and exits; the pytest-trio suite is run with pytest in a child process.
"""

from __future__ import annotations

import ast
import doctest
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.test_tutorial import commands

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

#: example -> (arguments, a pattern its output must match)
RUNS: dict[str, tuple[list[str], str]] = {
    "echo_server.py": (
        ["--demo", "--rounds", "20"],
        r"echo over io_uring: 64 clients .* all bytes verified: True",
    ),
    "chat_server.py": (
        ["--demo"],
        r"client 1 heard:\n  \* guest2 joined\n  \* guest3 joined\n  guest2: hello from client 2\n"
        r"  guest3: hello from client 3\nchat over io_uring",
    ),
    "http_server.py": (["--demo"], r"200 GET / over io_uring\n200 GET /hello over io_uring\n200 GET /bye"),
    "hypercorn_app.py": (
        ["--demo"],
        r"io_uring sockets open while serving: [1-9].*\nHTTP/1.1 200 \| / over io_uring\n"
        r"HTTP/1.1 200 \| /io_uring over io_uring\nserved by hypercorn on io_uring",
    ),
    "zero_copy_sink.py": (
        ["--mib", "16"],
        r"zero-copy receive, mode '(zcrx|zcrx-nodev|copy)': 16 MiB .* all returned: True, bytes exact: True"
        r"(.|\n)*statistics: ReceiverStatistics\(mode=.*leases_out=0",
    ),
    "ring_echo.py": (["--messages", "200"], r"io_uring echo: 200 round trips .* bytes verified: True"),
    "workers_server.py": (
        ["--demo"],
        r"2 workers \(io_uring, io_uring\), steering: .*\n40 connections served by 2 worker\(s\), "
        r"all of them the pool's: True",
    ),
}


def _run(argv: list[str], cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TRIO_URING"}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)


def _shown() -> dict[str, str]:
    """What docs/examples.md shows each example printing: ``command -> expected output``."""
    page = (ROOT / "docs" / "examples.md").read_text()
    return {
        command: expected
        for block in re.findall(r"^```console\n(.*?)^```$", page, re.S | re.M)
        for command, expected in commands(block)
    }


def _check_shown(command: str, output: str) -> None:
    expected = _shown().get(command)
    if expected is not None and command.startswith("python examples/zero_copy_sink.py"):
        # the page shows copy mode; a machine with device-less zcrx (Linux >= 7.1) uses that
        expected = re.sub(r"mode='copy'|mode 'copy'", lambda m: m[0].replace("copy", "..."), expected)
    if expected is not None and not doctest.OutputChecker().check_output(expected, output, doctest.ELLIPSIS):
        pytest.fail(f"docs/examples.md shows for $ {command}:\n{expected}\nit printed:\n{output}")


PYTEST_SUITE = "cd examples/pytest_suite && python -m pytest -q -p no:cacheprovider"


def test_every_command_on_the_examples_page_is_run_here() -> None:
    run_here = {" ".join(["python", f"examples/{name}", *args]) for name, (args, _) in RUNS.items()}
    assert len(_shown()) >= 6
    assert set(_shown()) <= {*run_here, PYTEST_SUITE}, set(_shown()) - run_here


@pytest.mark.parametrize("name", sorted(RUNS))
def test_example_runs(name: str) -> None:
    args, pattern = RUNS[name]
    proc = _run([sys.executable, str(EXAMPLES / name), *args])
    assert proc.returncode == 0, proc.stderr
    assert re.search(pattern, proc.stdout), proc.stdout
    _check_shown(" ".join(["python", f"examples/{name}", *args]), proc.stdout)


def test_pytest_suite_example_runs_on_io_uring() -> None:
    suite = EXAMPLES / "pytest_suite"
    proc = _run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider"], cwd=suite)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5 passed" in proc.stdout, proc.stdout
    assert "trio_uring: pytest-trio tests run on io_uring" in proc.stdout, proc.stdout
    quiet = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=suite)
    _check_shown(PYTEST_SUITE, quiet.stdout)


def _examples() -> list[Path]:
    return sorted(p for p in EXAMPLES.rglob("*.py") if not p.name.startswith("_"))


def test_every_example_says_what_it_shows_and_how_to_run_it() -> None:
    for path in _examples():
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and len(doc.splitlines()) >= 3, f"{path.name} starts without saying what it shows"
        assert re.search(r"python (examples/\S+\.py|-m pytest)", doc), (
            f"{path.name} does not say how to run it"
        )


def test_every_example_is_run_here_and_listed_in_the_docs() -> None:
    page = (ROOT / "docs" / "examples.md").read_text()
    for path in _examples():
        rel = path.relative_to(EXAMPLES).as_posix()
        assert rel in RUNS or rel.startswith("pytest_suite/"), f"no smoke test runs {rel}"
        assert f"examples/{rel}" in page, f"docs/examples.md does not show {rel}"
