"""The pytest plugin: ``--trio-uring`` / ``trio_uring = true`` put every pytest-trio test on io_uring."""

from __future__ import annotations

import errno
import textwrap
from pathlib import Path

import pytest

from tests._subproc import run_python

pytest_plugins = ["pytester"]

TRIO_MODE_INI = """
[pytest]
trio_mode = true
{extra}
"""

# Tests of the inner suites; every one asserts where it ran.
SUITE = """
import pytest
import trio
import trio.testing

import trio_uring
from trio_uring.socket import UringSocket


@pytest.fixture
async def listener_socket():
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


async def test_whole_test_on_io_uring():
    assert trio_uring.backend() == "io_uring"


async def test_async_fixture_sockets_are_io_uring(listener_socket):
    assert isinstance(listener_socket, UringSocket)
    stream = await trio.open_tcp_stream(*listener_socket.getsockname())
    async with stream:
        assert isinstance(stream.socket, UringSocket)


async def test_autojump_clock(autojump_clock):
    assert trio_uring.backend() == "io_uring"
    await trio.sleep(3600)
    assert trio.current_time() >= 3600


async def test_nursery_fixture(nursery):
    assert trio_uring.backend() == "io_uring"
    nursery.start_soon(trio.sleep, 0)


def test_sync_tests_are_untouched():
    import socket
    sock = trio.socket.from_stdlib_socket(socket.socket())
    with sock:
        assert not isinstance(sock, UringSocket)
"""


def test_ini_switch_with_trio_mode(pytester: pytest.Pytester) -> None:
    pytester.makeini(TRIO_MODE_INI.format(extra="trio_uring = true"))
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(["trio_uring: pytest-trio tests run on io_uring"])


def test_command_line_switch_with_module_and_per_test_marks(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    pytester.makepyfile(
        test_module_mark="import pytest, trio_uring\n"
        "pytestmark = pytest.mark.trio(run=trio_uring.run)\n" + SUITE.replace("def test_sync", "def _sync"),
        test_trio_run_mark=textwrap.dedent("""
            import pytest, trio, trio_uring
            from trio_uring.socket import UringSocket

            pytestmark = pytest.mark.trio

            async def test_module_mark_plain_trio_run():
                assert trio_uring.backend() == "io_uring"
                a, b = trio.socket.socketpair()
                with a, b:
                    assert isinstance(a, UringSocket)
        """),
        test_per_test=textwrap.dedent("""
            import pytest, trio_uring

            @pytest.mark.trio
            async def test_per_test_mark():
                assert trio_uring.backend() == "io_uring"
        """),
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--trio-uring")
    result.assert_outcomes(passed=6)


def test_off_by_default(pytester: pytest.Pytester) -> None:
    pytester.makeini(TRIO_MODE_INI.format(extra=""))
    pytester.makepyfile(
        test_off="import trio_uring\n\nasync def test_stock():\n    assert trio_uring.backend() == 'epoll'\n"
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_fixtures_for_users_suites(pytester: pytest.Pytester) -> None:
    pytester.makeini(TRIO_MODE_INI.format(extra="trio_uring = true"))
    pytester.makepyfile(
        test_fixtures=textwrap.dedent("""
        import trio_uring

        async def test_stream_pair(uring_stream_pair):
            client, server = uring_stream_pair
            assert isinstance(client, trio_uring.UringSocketStream)
            await client.send_all(b"ping")
            assert await server.receive_some() == b"ping"

        async def test_zc_receiver(uring_stream_pair, zc_receiver):
            await uring_stream_pair[0].send_all(b"lease me")
            with await zc_receiver.receive() as lease:
                assert bytes(lease.data) == b"lease me"
            assert zc_receiver.mode in ("zcrx", "zcrx-nodev", "copy")
    """)
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_bad_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini(TRIO_MODE_INI.format(extra="trio_uring = sometimes"))
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*trio_uring: expected true, fallback or false, not 'sometimes'*"])


def _seccomp_suite(tmp_path: Path, switch: str) -> tuple[int, str]:
    (tmp_path / "pytest.ini").write_text(TRIO_MODE_INI.format(extra=""))
    (tmp_path / "test_refused.py").write_text(
        textwrap.dedent("""
        import trio, trio_uring

        async def test_runs(autojump_clock):
            await trio.sleep(10)
            a, b = trio.socket.socketpair()
            with a, b:
                await a.send(b"x")
                assert await b.recv(1) == b"x"
            assert trio_uring.backend() == "epoll"

        async def test_stream_pair_on_readiness(uring_stream_pair):
            a, b = uring_stream_pair
            await a.send_all(b"y")
            assert await b.receive_some() == b"y"

        async def test_zero_copy_needs_io_uring(zc_receiver):
            raise AssertionError("skipped: a receiver cannot exist without io_uring")
    """)
    )
    proc = run_python(
        f"""
        import sys, pytest
        sys.exit(pytest.main([{str(tmp_path)!r}, "-p", "no:cacheprovider", "-rA", {switch!r}]))
    """,
        refuse={"setup": errno.EPERM},
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_fallback_where_io_uring_is_refused_warns_once(tmp_path: Path) -> None:
    code, out = _seccomp_suite(tmp_path, "--trio-uring=fallback")
    assert code == 0, out
    assert "2 passed, 1 skipped, 1 warning" in out, out  # one warning for the session, not per test
    assert "zero-copy receive needs io_uring" in out or "SKIPPED" in out, out
    assert "io_uring is unavailable, pytest-trio tests run on stock trio" in out
    assert "trio_uring: pytest-trio tests run on stock trio (io_uring unavailable)" in out


def test_without_fallback_a_refused_io_uring_fails_the_test_with_the_reason(tmp_path: Path) -> None:
    code, out = _seccomp_suite(tmp_path, "--trio-uring")
    assert code == 1, out
    assert "UringUnavailable" in out and "seccomp" in out.lower() and "To fix:" in out, out
