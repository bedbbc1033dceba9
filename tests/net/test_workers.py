"""``serve_tcp_workers``: real worker processes on loopback.

Every pool here is started for real (fresh interpreters, each on its own io_uring run) and
checked from outside: which process answered, what is left listening, which processes are
still alive. Loops are bounded in count and time.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import re
import signal
import socket as stdsocket
import struct
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from tests._subproc import run_python
from tests.net import _workers_app as app
from trio_uring import WorkerPool, WorkersFailed, ZcConfig, serve_tcp_workers

ROOT = str(Path(__file__).resolve().parents[2])


def _children() -> set[int]:
    pids: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        pids |= {int(p) for p in (task / "children").read_text().split()}
    return pids


def _alive(pid: int) -> bool:
    """Still holding anything: a zombie leader whose other threads still exit counts as alive."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        threads = len(os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        return False
    return state != "Z" or threads > 1


def _port_is_free(port: int) -> bool:
    """No socket listens on ``port`` any more (/proc/net/tcp{,6}: state 0A is LISTEN).

    Read from the kernel's table rather than by binding the port: once the listeners are
    gone the kernel may hand the port out as any connection's ephemeral port.
    """
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    return False
    return True


def _port_freed_within(port: int, seconds: float = 5) -> bool:
    """:func:`_port_is_free`, allowing for the kernel's io_uring teardown: a process that was
    killed drops the files its ring's ops hold (an armed accept on the listener) from a
    kernel worker shortly after it exits (measured: up to ~1 s on a loaded 2-CPU machine)."""
    deadline = time.monotonic() + seconds
    while not _port_is_free(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _refused_within(port: int, seconds: float) -> bool:
    """Connections to ``port`` are refused (nothing listens) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            stdsocket.create_connection(("127.0.0.1", port), timeout=5).close()
        except ConnectionRefusedError:
            return True
        time.sleep(0.01)
    return False


def _ask(port: int, timeout: float = 10) -> int:
    """One connection, one line: the pid of the worker that answered."""
    with stdsocket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"?\n")
        return int(s.makefile().readline())


def _raises_failed(match: str) -> Any:
    """WorkersFailed, out of the nurseries around it."""
    return pytest.RaisesGroup(pytest.RaisesExc(WorkersFailed, match=match), flatten_subgroups=True)


async def _start(nursery: trio.Nursery, handler: Any, **kw: Any) -> WorkerPool:
    kw.setdefault("host", "127.0.0.1")
    kw.setdefault("handle_signals", False)  # the test runner keeps its own Ctrl-C
    pool: WorkerPool = await nursery.start(functools.partial(serve_tcp_workers, handler, 0, **kw))
    return pool


async def test_every_worker_gets_connections_and_nothing_is_left_afterwards(no_fd_leak: None) -> None:
    before = _children()
    async with trio.open_nursery() as nursery:
        pool = await _start(nursery, app.whoami, workers=2)
        pids = pool.pids
        assert pool.backends == ["io_uring", "io_uring"] and pool.steering == "hash"
        assert [os.sched_getaffinity(p) for p in pids if p] == [{c} for c in pool.cpus]
        # Another program of ours binding the port: without SO_REUSEPORT it is refused; with it
        # the kernel lets it join the group, and the steering program never picks it.
        with stdsocket.socket() as plain, pytest.raises(OSError, match="Address already in use"):
            plain.bind(("127.0.0.1", pool.port))
        latecomer = stdsocket.socket()
        latecomer.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEPORT, 1)
        latecomer.bind(("127.0.0.1", pool.port))
        latecomer.listen()
        latecomer.setblocking(False)
        counts: dict[int, int] = {}
        for _ in range(40):  # hash steering: each of 2 workers misses all 40 with p = 2**-39
            pid = await trio.to_thread.run_sync(_ask, pool.port)
            counts[pid] = counts.get(pid, 0) + 1
        assert set(counts) == set(pids), counts
        with pytest.raises(BlockingIOError):
            latecomer.accept()
        latecomer.close()
        pool.stop()
    assert not any(_alive(p) for p in pids if p)
    assert _children() <= before
    assert _port_is_free(pool.port)


async def test_workers_outlive_the_thread_that_happened_to_be_around(monkeypatch: pytest.MonkeyPatch) -> None:
    # PR_SET_PDEATHSIG fires when the *thread* that forked a worker exits. trio's cached
    # threads (where trio.lowlevel.open_process forks) exit after 10 idle seconds; made 0.1 s
    # here once the workers are up, every cached thread is given a job so that it idles out:
    # a worker forked by one of them would be told to stop within the sleep below.
    import trio._core._thread_cache as thread_cache  # noqa: PLC0415

    async with trio.open_nursery() as nursery:
        pool = await _start(nursery, app.whoami, workers=2)
        pids = pool.pids
        monkeypatch.setattr(thread_cache, "IDLE_TIMEOUT", 0.1)
        async with trio.open_nursery() as jobs:
            for _ in range(4):
                jobs.start_soon(trio.to_thread.run_sync, time.sleep, 0.1)
        await trio.sleep(1.0)
        assert pool.pids == pids and pool.restarts == 0
        pool.stop()


async def test_rx_queue_steering_on_loopback_spreads_by_flow_hash() -> None:
    # lo records no rx queue (skb->queue_mapping stays 0, which no worker's queue + 1 is): the
    # program finds no owner and chooses by flow hash, so both workers get connections. A
    # program that read anything else as the queue (the interface index: lo is 1 = queue 0 + 1)
    # would send all of them to worker 0.
    async with trio.open_nursery() as nursery:
        pool = await _start(nursery, app.whoami, workers=2, steering="rx-queue")
        assert pool.steering == "rx-queue"
        # each of the 2 workers misses all 20 with p = 2**-19
        answers = [await trio.to_thread.run_sync(_ask, pool.port) for _ in range(20)]
        assert set(answers) == set(pool.pids), answers
        pool.stop()


# seccomp: setsockopt(..., SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, ...) fails with EPERM
_REFUSE_CBPF = """
import ctypes, platform, struct
libc = ctypes.CDLL(None, use_errno=True)
libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4
nr = {"x86_64": 54, "aarch64": 208}[platform.machine()]
def ins(code, jt, jf, k):
    return struct.pack("=HBBI", code, jt, jf, k)
prog = [ins(0x20, 0, 0, 0), ins(0x15, 0, 3, nr),         # ld nr; jne setsockopt -> allow
        ins(0x20, 0, 0, 32), ins(0x15, 0, 1, 51),          # ld args[2] (low half); jne 51 -> allow
        ins(0x06, 0, 0, 0x00050000 | 1),                   # ret ERRNO(EPERM)
        ins(0x06, 0, 0, 0x7fff0000)]                       # ret ALLOW
buf = ctypes.create_string_buffer(b"".join(prog))
fbuf = ctypes.create_string_buffer(struct.pack("=HxxxxxxQ", len(prog), ctypes.addressof(buf)))
assert libc.prctl(38, 1, 0, 0, 0) == 0 and libc.prctl(22, 2, ctypes.addressof(fbuf), 0, 0) == 0
"""


@pytest.mark.skipif(os.uname().machine not in ("x86_64", "aarch64"), reason="setsockopt's number is per arch")
def test_zc_workers_default_their_receivers_to_their_queue_and_steering_falls_back_to_hash() -> None:
    code = _REFUSE_CBPF + textwrap.dedent(f"""
        import functools, socket, sys, trio, trio_uring
        sys.path.insert(0, {ROOT!r})
        from tests.net._workers_app import zc_report

        async def main(steering):
            async with trio.open_nursery() as n:
                pool = await n.start(functools.partial(
                    trio_uring.serve_tcp_workers, zc_report, 0, host="127.0.0.1", steering=steering,
                    zc=trio_uring.ZcConfig("lo", [0]), handle_signals=False))
                print("steering:", pool.steering)
                s = await trio.to_thread.run_sync(socket.create_connection, ("127.0.0.1", pool.port))
                s.sendall(b"zc")
                print("answer:", s.makefile().readline().strip())
                s.close()
                pool.stop()

        if __name__ == "__main__":
            trio.run(main, None)
            try:
                trio.run(functools.partial(trio_uring.serve_tcp_workers, zc_report, 0, steering="rx-queue",
                                           zc=trio_uring.ZcConfig("lo", [0])))
            except OSError as exc:
                print("explicit:", exc)
    """)
    proc = run_python(code, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    assert lines["steering"].startswith("kernel hash (the steering program could not be attached: [Errno 1]")
    assert "spread by hash, not by RX queue" in proc.stderr  # the warning
    where, mode, reason, data = lines["answer"].split("|")
    # the worker's receiver tried zcrx on the worker's interface and queue (lo cannot do it)
    assert where == "('lo', 0)" and mode in ("copy", "zcrx-nodev") and data == "b'zc'"
    assert reason.startswith("zcrx: lo cannot do zero-copy receive"), reason
    assert (
        "could not be attached ([Errno 1]" in lines["explicit"]
        and "no worker was started" in lines["explicit"]
    )


def _spread(attach: Any, connections: int = 40) -> list[int]:
    """Connections each of 3 loopback sockets on one port accepts: 2 in a reuseport group whose
    program ``attach(first_socket)`` sets, 1 joining the group afterwards (another program of the
    same user binding the port with ``SO_REUSEPORT``)."""
    socks = []
    try:
        for i in range(3):
            s = stdsocket.socket()
            socks.append(s)
            s.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEPORT, 1)
            s.bind(("127.0.0.1", socks[0].getsockname()[1] if i else 0))
            s.setblocking(False)
            if i < 2:
                s.listen(64)
        attach(socks[0])
        socks[2].listen(64)  # the latecomer
        clients = [stdsocket.create_connection(socks[0].getsockname()) for _ in range(connections)]
        counts = []
        for s in socks:
            n = 0
            with pytest.raises(BlockingIOError):
                while n < connections + 1:
                    s.accept()[0].close()
                    n += 1
            counts.append(n)
        for c in clients:
            c.close()
        return counts
    finally:
        for s in socks:
            s.close()


def _attach_load(offset: int) -> Any:
    """An attacher of the reuseport program ``ld [SKF_AD_OFF + offset]; ret A``: the index it
    picks is the ancillary value itself."""
    from trio_uring._net import _steering as st  # noqa: PLC0415

    def attach(sock: stdsocket.socket) -> None:
        prog = [(st._LD_W_ABS, 0, 0, (st.SKF_AD_OFF + offset) & 0xFFFFFFFF), (st._RET_A, 0, 0, 0)]
        filt = ctypes.create_string_buffer(b"".join(struct.pack("=HBBI", *ins) for ins in prog))
        fprog = struct.pack("@HP", len(prog), ctypes.addressof(filt))
        sock.setsockopt(stdsocket.SOL_SOCKET, st.SO_ATTACH_REUSEPORT_CBPF, fprog)

    return attach


def test_the_program_loads_the_rx_queue_not_the_interface_index() -> None:
    from trio_uring._net._steering import SKF_AD_QUEUE  # noqa: PLC0415

    # On lo the queue is 0 (no driver records one) and the interface index is 1 in every network
    # namespace, so a load of the two picks socket 0 and socket 1 of the group respectively.
    # The second line shows the check tells them apart: the NIC lane's workers once all got
    # queue 1's connections because SKF_AD_QUEUE was 8, which is SKF_AD_IFINDEX (the NIC's
    # index there is 2 = queue 1 + 1).
    assert _spread(_attach_load(SKF_AD_QUEUE), 8) == [8, 0, 0]
    assert _spread(_attach_load(8), 8) == [0, 8, 0]  # SKF_AD_IFINDEX


def _run_steering_program(prog: list[tuple[int, int, int, int]], queue_mapping: int, rxhash: int) -> int:
    """What the kernel's cBPF interpreter returns for a packet with these ancillary values
    (the instructions :func:`steering_program` emits, nothing else)."""
    from trio_uring._net import _steering as st  # noqa: PLC0415

    ancillary = {
        (st.SKF_AD_OFF + st.SKF_AD_QUEUE) & 0xFFFFFFFF: queue_mapping,
        (st.SKF_AD_OFF + st.SKF_AD_RXHASH) & 0xFFFFFFFF: rxhash,
    }
    a, pc = 0, 0
    for _ in range(len(prog)):  # no backward jumps in cBPF: at most one pass
        code, jt, jf, k = prog[pc]
        if code == st._LD_W_ABS:
            a = ancillary[k]
        elif code == st._JEQ_K:
            pc += jt if a == k else jf
        elif code == st._MOD_K:
            a %= k
        elif code == st._RET_K:
            return k
        elif code == st._RET_A:
            return a
        else:
            raise AssertionError(f"unexpected instruction {code:#x}")
        pc += 1
    raise AssertionError("the program ran off its end")


def test_the_steering_program_maps_queue_plus_one_to_its_worker_else_the_flow_hash() -> None:
    from trio_uring._net._steering import NO_SOCKET, steering_program  # noqa: PLC0415

    prog = steering_program(3, [4, 1, 7])
    for index, queue in enumerate([4, 1, 7]):
        assert _run_steering_program(prog, queue + 1, rxhash=0x1234) == index  # recorded as queue + 1
    for unowned in (0, 1, 3, 9):  # 0: no queue recorded; 1, 3, 9: rx queues 0, 2, 8
        assert _run_steering_program(prog, unowned, rxhash=0x1234) == 0x1234 % 3
        assert _run_steering_program(prog, unowned, rxhash=0) == NO_SOCKET  # the kernel's hash then
    assert _run_steering_program(steering_program(2), 5, rxhash=7) == 1  # no queues: hash only


def test_the_steering_program_spreads_what_no_worker_owns_by_flow_hash_and_never_to_a_latecomer() -> None:
    from trio_uring._net._steering import attach_steering  # noqa: PLC0415

    # lo records no rx queue, so whatever the queues, every connection is chosen by flow hash
    # among the group's first two sockets; the latecomer gets none.
    for queues in ([0, 1], [1, 0], [5, 6], None):
        hashed = _spread(functools.partial(attach_steering, workers=2, queues=queues))
        assert sum(hashed) == 40 and min(hashed[:2]) > 0 and hashed[2] == 0, (queues, hashed)


async def test_graceful_shutdown_under_load_loses_no_acknowledged_request(tmp_path: Path) -> None:
    os.environ["TU_JOURNAL_DIR"] = str(tmp_path)  # the workers inherit it
    acked: set[bytes] = set()
    after_stop: list[bytes] = []
    stopped_at = [0.0]
    grace = 1.0

    def client(n: int) -> None:
        s = stdsocket.create_connection(("127.0.0.1", pool.port), timeout=10)
        f = s.makefile("rb")
        try:
            for i in range(400):  # at 50 ms per request: far more than the test lasts
                rid = b"%d-%d" % (n, i)
                s.sendall(rid + b"\n")
                line = f.readline()
                if not line:
                    return
                assert line == b"ok " + rid + b"\n", line
                acked.add(rid)
                if stopped_at[0]:
                    after_stop.append(rid)
        except (ConnectionResetError, BrokenPipeError):
            return
        finally:
            s.close()

    try:
        async with trio.open_nursery() as nursery:
            pool = await _start(nursery, app.journal, workers=2, grace=grace)
            async with trio.open_nursery() as clients:
                for n in range(8):
                    clients.start_soon(
                        functools.partial(trio.to_thread.run_sync, client, n, abandon_on_cancel=True)
                    )
                await trio.sleep(0.7)
                stopped_at[0] = time.monotonic()
                pool.stop()
                assert await trio.to_thread.run_sync(_refused_within, pool.port, 5)  # accepting stopped
        took = time.monotonic() - stopped_at[0]
    finally:
        del os.environ["TU_JOURNAL_DIR"]
    journal = set()
    for f in tmp_path.iterdir():
        journal |= set(f.read_bytes().split())
    assert acked and acked <= journal, acked - journal
    assert len(after_stop) >= 8, "in-flight connections were not given their grace"
    assert grace <= took < grace + 3, took


async def test_sigkill_of_a_worker_restarts_it_and_the_server_keeps_answering() -> None:
    with _raises_failed(r"worker 0 \(pid \d+\) killed by SIGKILL"):
        async with trio.open_nursery() as nursery:
            pool = await _start(nursery, app.whoami, workers=2)
            victim = pool.pids[0]
            assert victim is not None
            os.kill(victim, signal.SIGKILL)
            # A connection it accepted before the signal took effect dies with it (no answer
            # was given, so nothing acknowledged is lost); the claim is about what comes after.
            assert await trio.to_thread.run_sync(_gone_within, [victim], 5)
            # Connections hashed to the dead worker wait in its listener (the supervisor holds
            # it open) until the new worker takes them: every one is answered.
            answers = [await trio.to_thread.run_sync(_ask, pool.port) for _ in range(20)]
            assert victim not in answers
            with trio.fail_after(20):
                while pool.pids[0] in (None, victim):
                    await trio.sleep(0.05)
            assert pool.restarts == 1 and pool.backends[0] == "io_uring"
            assert pool.pids[0] in {await trio.to_thread.run_sync(_ask, pool.port) for _ in range(40)}
            pool.stop()
    assert not _alive(victim)


async def test_a_handler_that_raises_ends_its_worker_which_is_restarted() -> None:
    with _raises_failed(r"worker 0 \(pid \d+\) exited with status 1"):
        async with trio.open_nursery() as nursery:
            pool = await _start(nursery, app.crash, workers=1)
            first = pool.pids[0]
            with stdsocket.create_connection(("127.0.0.1", pool.port), timeout=10) as s:
                s.sendall(b"x")
                assert s.recv(10) == b""  # the worker died with the connection
            with trio.fail_after(20):
                while pool.pids[0] in (None, first):
                    await trio.sleep(0.05)
            pool.stop()


@pytest.fixture
def taken_port() -> Iterator[int]:
    with stdsocket.socket() as s:
        s.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEPORT, 1)  # the hostile case: joinable
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"workers": 0}, ValueError, "workers must be an int >= 1"),
        ({"handler": app.not_async}, TypeError, "handler must be an async function"),
        ({"handler": lambda stream: app.whoami(stream)}, TypeError, "handler must be an async function"),
        ({"grace": -1}, ValueError, "grace must be"),
        ({"steering": "rss"}, ValueError, "steering must be"),
        ({"cpu_affinity": [4096]}, ValueError, "cpu_affinity must be"),
        ({"zc": ZcConfig("lo", (0, 1))}, ValueError, r"lo has 1 rx queue\(s\).*ethtool -L lo combined 2"),
        ({"zc": ZcConfig("lo", (0,)), "workers": 2}, ValueError, "one queue per worker"),
        ({"zc": ZcConfig("nosuch0", (0,))}, ValueError, "does not exist"),
        ({"port": "taken"}, OSError, r"already in use .*no worker was started"),
    ],
)
async def test_bad_arguments_fail_before_any_worker_starts(
    kwargs: dict[str, Any], error: type[Exception], match: str, taken_port: int, no_fd_leak: None
) -> None:
    handler = kwargs.pop("handler", app.whoami)
    port = taken_port if kwargs.pop("port", 0) == "taken" else 0
    before = _children()
    with pytest.raises(error, match=match):
        await serve_tcp_workers(handler, port, host="127.0.0.1", handle_signals=False, **kwargs)
    assert _children() == before


def test_zc_config_rejects_what_cannot_be_a_queue_list() -> None:
    for queues in ([], [0, 0], [-1], ["0"]):
        with pytest.raises(ValueError, match=r"ZcConfig\.queues"):
            ZcConfig("lo", queues)  # type: ignore[arg-type]


def test_io_uring_refused_fails_before_any_worker_or_falls_back_once() -> None:
    code = textwrap.dedent(f"""
        import functools, os, socket, sys, trio, trio_uring
        sys.path.insert(0, {ROOT!r})
        from tests.net._workers_app import whoami

        async def main():
            async with trio.open_nursery() as n:
                pool = await n.start(functools.partial(trio_uring.serve_tcp_workers, whoami, 0,
                    host="127.0.0.1", workers=2, fallback=True, handle_signals=False))
                print("backends:", pool.backends)
                with socket.create_connection(("127.0.0.1", pool.port)) as s:
                    s.sendall(b"?\\n")
                    print("answer:", int(s.makefile().readline()) in pool.pids)
                pool.stop()

        if __name__ == "__main__":
            try:
                trio.run(functools.partial(trio_uring.serve_tcp_workers, whoami, 0, handle_signals=False))
            except trio_uring.UringUnavailable as exc:
                print("refused:", exc)
            trio.run(main)
    """)
    proc = run_python(code, refuse={"setup": errno.EPERM}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(": ", 1) for line in proc.stdout.splitlines())
    assert "seccomp" in lines["refused"], lines
    assert lines["backends"] == "['epoll', 'epoll']" and lines["answer"] == "True"
    assert proc.stderr.count("io_uring is unavailable") == 1, proc.stderr


def test_a_worker_that_cannot_start_stops_the_others_and_says_why() -> None:
    # setup is allowed (the supervisor's own check passes), the worker's first enter is not
    code = textwrap.dedent(f"""
        import functools, os, sys, trio, trio_uring
        sys.path.insert(0, {ROOT!r})
        from tests.net._workers_app import whoami

        if __name__ == "__main__":
            try:
                trio.run(functools.partial(trio_uring.serve_tcp_workers, whoami, 0, host="127.0.0.1",
                                           workers=2, handle_signals=False))
            except trio_uring.WorkerStartError as exc:
                print("error:", exc)
            with open(f"/proc/self/task/{{os.getpid()}}/children") as f:
                print("children:", f.read().split())
    """)
    proc = run_python(code, refuse={"enter": errno.EPERM}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "children: []" in proc.stdout
    assert re.match(
        r"error: worker \d \(pid \d+\) could not start: "
        r"io_uring is unavailable: io_uring_enter .*EPERM.*seccomp",
        proc.stdout,
    ), proc.stdout


def _serve_cli(*args: str) -> tuple[subprocess.Popen[str], int, list[int]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "trio_uring", "serve", *args, "--port", "0", "--host", "127.0.0.1"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's job or a service has
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("serving "), (line, proc.stderr.read() if proc.stderr else "")
    port = int(line.split(" on 127.0.0.1:")[1].split()[0])
    pids = [int(p) for p in line.split("(pids ")[1].split(";")[0].split()]
    return proc, port, pids


def _reap(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize(
    "sig",
    [
        pytest.param(signal.SIGINT, id="ctrl-c"),  # a terminal signals the whole foreground group
        pytest.param(signal.SIGTERM, id="service-stop"),  # systemd's default: the whole group too
    ],
)
def test_cli_stops_gracefully_on_a_group_signal_and_at_once_on_the_second(sig: int) -> None:
    proc, port, pids = _serve_cli("tests.net._workers_app:whoami", "--workers", "2", "--grace", "30")
    try:
        idle = stdsocket.create_connection(("127.0.0.1", port))  # holds its worker for the grace
        idle.sendall(b"?\n")
        assert int(idle.makefile().readline()) in pids  # accepted, in its handler
        os.killpg(proc.pid, sig)
        assert _refused_within(port, 5)  # accepting stops at once
        time.sleep(0.3)
        # waiting for the idle connection, as asked: the workers did not take the one signal
        # for two (theirs and the supervisor's)
        assert proc.poll() is None and any(_alive(p) for p in pids)
        os.killpg(proc.pid, sig)
        assert proc.wait(timeout=10) == 0
        assert idle.recv(10) == b""  # cancelled, closed
        idle.close()
        assert _gone_within(pids, 1) and _port_freed_within(port)
        assert proc.stderr is not None and "stopping at once" in proc.stderr.read()
    finally:
        _reap(proc)


def test_cli_exit_status_reflects_a_crashed_worker() -> None:
    proc, port, pids = _serve_cli("tests.net._workers_app:whoami", "--workers", "1")
    try:
        os.kill(pids[0], signal.SIGKILL)
        assert _gone_within(pids, 5)
        assert _ask(port) != pids[0]  # answered by its replacement
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 1
        assert proc.stderr is not None and "killed by SIGKILL" in proc.stderr.read()
    finally:
        _reap(proc)


def test_supervisor_killed_leaves_no_orphans_and_frees_the_port() -> None:
    proc, port, pids = _serve_cli("tests.net._workers_app:whoami", "--workers", "2", "--grace", "1")
    try:
        assert _ask(port) in pids
        proc.kill()  # SIGKILL: no cleanup of its own; PR_SET_PDEATHSIG ends the workers
        proc.wait()
        assert _gone_within(pids, 1 + 5), [p for p in pids if _alive(p)]
        assert _port_freed_within(port)
    finally:
        _reap(proc)


def test_a_worker_stuck_in_its_handler_is_gone_soon_after_its_supervisor() -> None:
    proc, port, pids = _serve_cli("tests.net._workers_app:stuck", "--workers", "1", "--grace", "0.5")
    try:
        with stdsocket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"x")  # the worker's thread is now asleep in the handler
            time.sleep(0.3)
            proc.kill()
            proc.wait()
            # trio never runs again in that worker; its supervisor-watch thread ends it
            assert _gone_within(pids, 0.5 + 3 + 5), [p for p in pids if _alive(p)]
        assert _port_freed_within(port), port
    finally:
        _reap(proc)


def test_doctor_checks_queues_steering_and_ntuple_and_prints_the_fixes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from trio_uring.__main__ import main  # noqa: PLC0415
    from trio_uring._net._steering import check_workers  # noqa: PLC0415

    assert main(["doctor", "--interface", "lo", "--workers", "2"]) == 1  # lo has one rx queue
    out = capsys.readouterr().out
    assert "1 rx queue(s); 2 workers on queues 0..1 need 2" in out and "ethtool -L lo combined 2" in out
    assert "the kernel accepts the RX-queue reuseport program" in out
    # a NIC with 8 queues (its sysfs, as the kernel lays it out), workers on queues 4..7
    for q in range(8):
        (tmp_path / "eth9" / "queues" / f"rx-{q}").mkdir(parents=True)
    ok = check_workers("eth9", 4, 4, sysfs=tmp_path, ethtool_k="ntuple-filters: on\n")
    assert ok.ok and ok.queues == (4, 5, 6, 7), ok
    assert "ethtool -X eth9 context new start 4 equal 4   # prints context N" in ok.fixes
    off = check_workers("eth9", 6, 4, sysfs=tmp_path, ethtool_k="ntuple-filters: off\n")
    assert (
        not off.ok and "ethtool -L eth9 combined 10" in off.fixes and "ethtool -K eth9 ntuple on" in off.fixes
    )
