"""The README's "Use it" snippets, run as written (each ``<!-- snippet: NAME -->`` block).

hypercorn, anyio and ``TRIO_URING=1`` with spawned workers are mirrored in
tests/net/test_no_bypass.py (the README names the tests); ``pip install`` of the sdist in a
fresh venv is ``make dist-check``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests._subproc import SYSCALLS, run_python
from tests._util import load_module

pytest_plugins = ["pytester"]

README = Path(__file__).resolve().parents[1] / "README.md"
BIN = str(Path(sys.executable).parent)


def snippet(name: str) -> str:
    m = re.search(rf"<!-- snippet: {re.escape(name)} -->\n```\w*\n(.*?)```", README.read_text(), re.S)
    assert m, f"README has no snippet {name!r}"
    return m.group(1)


def _commands(name: str) -> list[str]:
    return [line.split("#")[0].strip() for line in snippet(name).splitlines() if line.split("#")[0].strip()]


def test_pip_snippet() -> None:
    text = snippet("pip")
    assert "liburing-dev" in text and "liburing-devel" in text and "pip install trio-uring" in text
    doctor = _commands("pip")[-1]
    assert doctor == "python -m trio_uring doctor"
    proc = subprocess.run(
        doctor.split(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "io_uring          usable" in proc.stdout


def test_run_snippet() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", snippet("run")], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.startswith("running on io_uring\nStatistics(backend='io_uring'"), proc.stdout


def test_pytest_snippets(pytester: pytest.Pytester) -> None:
    pytester.makeini(snippet("pytest-ini"))
    pytester.makepyfile(test_readme_suite=snippet("pytest-test"))
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)


def test_hypercorn_snippet_compiles_and_installs_the_factory() -> None:
    code = snippet("hypercorn")
    compile(code, "README hypercorn snippet", "exec")
    assert "trio_uring.install_socket_factory()" in code  # run for real by test_no_bypass.py


def test_workers_snippet_matches_its_mirror() -> None:
    assert _commands("workers") == ["TRIO_URING=1 hypercorn --worker-class trio --workers 4 app:app"]
    mirror = re.sub(r"\s+", " ", (Path(__file__).parent / "net" / "test_no_bypass.py").read_text())
    assert '"--worker-class", "trio", "--workers", "2"' in mirror and '"TRIO_URING": "1"' in mirror


def test_seccomp_rule_snippet_names_the_three_syscalls() -> None:
    rule = json.loads(snippet("seccomp-rule"))
    assert rule["action"] == "SCMP_ACT_ALLOW"
    assert sorted(rule["names"]) == sorted(f"io_uring_{name}" for name in SYSCALLS)


def test_fallback_snippets_under_a_seccomp_filter(tmp_path: Path) -> None:
    (tmp_path / "pytest.ini").write_text("[pytest]\ntrio_mode = true\n")
    (tmp_path / "test_x.py").write_text("import trio\n\nasync def test_x():\n    await trio.sleep(0)\n")
    for line in _commands("fallback"):
        proc = run_python(
            textwrap.dedent(f"""
            import os, subprocess, sys
            env = {{**os.environ, "PATH": {BIN!r} + ":" + os.environ["PATH"]}}
            p = subprocess.run(["sh", "-c", {line!r}], cwd={str(tmp_path)!r}, env=env,
                               capture_output=True, text=True, timeout=120)
            sys.stdout.write(p.stdout + p.stderr)
            sys.exit(p.returncode)
        """),
            refuse={"setup": errno.EPERM},
            timeout=150,
        )
        assert proc.returncode == 0, (line, proc.stdout, proc.stderr)
        assert proc.stdout.count("io_uring is unavailable") == 1, (line, proc.stdout)


def test_serve_workers_snippet(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(snippet("serve-workers"))
    proc = subprocess.run(
        [sys.executable, "app.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"b'hi' {len(os.sched_getaffinity(0))} hash\n", proc.stdout


def test_serve_cli_snippet(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(snippet("serve-workers"))
    [command] = _commands("serve-cli")
    assert command == "python -m trio_uring serve app:echo --port 8000 --workers 4"
    argv = command.replace("--port 8000", "--port 0 --host 127.0.0.1").split()  # a free port here
    proc = subprocess.Popen(
        [sys.executable, *argv[1:]], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert " with 4 workers " in line, line
        port = int(line.split("127.0.0.1:")[1].split()[0])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"ping")
            assert s.recv(10) == b"ping"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_bench_workers_snippet_names_what_the_suite_has() -> None:
    import shlex  # noqa: PLC0415

    bench = load_module("bench", README.parent / "benchmarks" / "bench.py")
    argv = shlex.split(snippet("bench-workers").replace("\\\n", " "))
    args = dict(zip(argv[2::2], argv[3::2]))
    assert argv[:2] == ["python", "benchmarks/bench.py"]
    assert all(bench.is_pool(s) or s in bench.SERVERS for s in args["--servers"].split(","))
    assert all(
        s in bench.SCENARIOS and bench.SCENARIOS[s][3] == "echo" for s in args["--scenarios"].split(",")
    )
    assert bench.expand_cpus(args["--worker-cpus"]) == ["0", "1", "2", "3"] and args["--client-cpu"] == "4"
