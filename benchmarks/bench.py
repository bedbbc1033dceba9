"""The benchmark suite: every backend side by side in one run, on loopback.

    python benchmarks/bench.py [--quick] [--repeat N] [--servers a,b] [--scenarios x,y] [--update-readme]
                               [--worker-cpus 0,1] [--client-cpu 1]

Servers run pinned to CPU 0, the C load generator (epoll) to CPU 1. ``trio_uring_wN`` (N
worker processes of ``serve_tcp_workers``, echo scenarios only) pins its workers to the first
N CPUs of ``--worker-cpus``; its CPU time, RSS and syscalls are the whole process tree's.
Per scenario and server:
throughput, p50/p99 round-trip latency, server CPU time per request (from /proc), the load
generator's CPU use (100% means the client, not the server, set the pace), server syscalls
per request (``perf stat`` counting ``raw_syscalls:sys_enter``, or ``strace -c -f`` where perf
cannot, attached during a second, shorter load) and peak RSS.
Loopback numbers on a small VM move by tens of percent from one sample to the next, so
the suite runs ``--repeat`` rounds, each round every scenario and server in turn and
``floor.py`` once (interleaved, so drift hits all alike); the table shows the median round
and the throughput's spread, the floor its median run.
Prints a table with ratios against stock trio and against the C liburing server, writes
``benchmarks/results/latest.json`` and ``latest.png``, and with ``--update-readme`` replaces
the results block of README.md. Everything is measured here and now; nothing is typed in.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
BUILD = HERE / "build"
SERVER_CPU, CLIENT_CPU = "0", "1"
WORKER_CPUS = "0,1"


def expand_cpus(spec: str) -> list[str]:
    """``0-3,6`` -> ``["0", "1", "2", "3", "6"]`` (taskset's list syntax)."""
    out = []
    for part in spec.split(","):
        lo, _, hi = part.partition("-")
        out += [str(c) for c in range(int(lo), int(hi or lo) + 1)]
    return out


SERVERS = [
    "trio_uring",
    "trio_uring_ring",
    "trio_factory",
    "trio",
    "asyncio",
    "uvloop",
    "uvloop_protocol",
    "c_liburing",
    # worker pools: 1 and 2 processes (echo scenarios only); any trio_uring_wN runs with --servers
    "trio_uring_w1",
    "trio_uring_w2",
]
# name: (loadgen mode, connections, size, server mode, what a "request" is)
SCENARIOS: dict[str, tuple[str, int, int, str, str]] = {
    "echo 1x64B": ("echo", 1, 64, "echo", "round trip"),
    "echo 64x64B": ("echo", 64, 64, "echo", "round trip"),
    "echo 64x4KiB": ("echo", 64, 4096, "echo", "round trip"),
    "echo 1000x64B": ("echo", 1000, 64, "echo", "round trip"),
    "bulk 1x64KiB": ("sink", 1, 65536, "sink", "64 KiB"),
    "bulk 1x64KiB zero-copy": ("sink", 1, 65536, "sink-zc", "64 KiB"),
    "bulk 1x64KiB zero-copy async for": ("sink", 1, 65536, "sink-zc-for", "64 KiB"),
    "churn": ("churn", 1, 64, "echo", "connection"),
    "idle 1000": ("idle", 1000, 0, "echo", "connection"),
}


def is_pool(server: str) -> bool:
    return re.fullmatch(r"trio_uring_w\d+", server) is not None


def pool_cpus(server: str) -> str:
    """The CPUs a worker pool runs on: the first N of ``--worker-cpus``."""
    n = int(server.rsplit("_w", 1)[1])
    cpus = WORKER_CPUS.split(",")
    if len(cpus) < n:
        raise RuntimeError(f"{server} needs {n} CPUs in --worker-cpus, got {WORKER_CPUS}")
    return ",".join(cpus[:n])


def kernel() -> str:
    """The kernel version, without the build's local suffix."""
    m = re.match(r"[\d.]+", platform.release())
    return m.group(0) if m else platform.release()


def build_native() -> dict[str, Path]:
    BUILD.mkdir(exist_ok=True)
    out = {}
    for name, libs in (("loadgen", []), ("uring_server", ["-luring"])):
        exe = BUILD / name
        src = HERE / f"{name}.c"
        if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
            subprocess.run(["cc", "-O2", "-Wall", "-o", str(exe), str(src), *libs], check=True)
        out[name] = exe
    return out


def server_cmd(server: str, mode: str, exes: dict[str, Path]) -> list[str]:
    if server == "c_liburing":
        return [str(exes["uring_server"]), "sink" if mode.startswith("sink-zc") else mode]
    return [sys.executable, str(HERE / "servers.py"), server, mode]


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a worker pool's supervisor and its workers)."""
    out = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(FileNotFoundError):  # a thread or child that just ended
            out += [d for child in (task / "children").read_text().split() for d in tree(int(child))]
    return out


def cpu_seconds(pid: int) -> float:
    total = 0
    for p in tree(pid):
        fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def peak_rss_kib(pid: int) -> int:
    total = 0
    for p in tree(pid):
        m = re.search(r"VmHWM:\s+(\d+)", Path(f"/proc/{p}/status").read_text())
        total += int(m.group(1)) if m else 0
    return total


def start_server(cmd: list[str], cpus: str = "") -> tuple[subprocess.Popen[str], int]:
    env = {**os.environ, "BENCH_WORKER_CPUS": WORKER_CPUS}
    proc = subprocess.Popen(
        ["taskset", "-c", cpus or SERVER_CPU, *cmd], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.strip().isdigit():
        proc.kill()
        raise RuntimeError(f"server {cmd} did not start")
    return proc, int(line)


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def load(exe: Path, mode: str, port: int, *, conns: int, size: int, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        ["taskset", "-c", CLIENT_CPU, str(exe), mode, str(port), str(conns), str(size), str(seconds)],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 120,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def _perf_counts_syscalls() -> bool:
    """True if ``perf stat`` can count syscall tracepoints here (root or a permissive kernel)."""
    if shutil.which("perf") is None:
        return False
    probe = subprocess.run(
        ["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "true"],
        capture_output=True,
        text=True,
        check=False,
    )
    return probe.returncode == 0


def count_syscalls(
    pid: int, exe: Path, mode: str, port: int, *, conns: int, size: int, seconds: float, perf: bool
) -> tuple[int, int]:
    """(syscalls, requests) of a load run with a counter attached to the server.

    ``perf stat`` counting the ``raw_syscalls:sys_enter`` tracepoint barely slows the
    server; ``strace -c`` (the fallback) slows it several times over, and a slowed server
    finds data waiting more often, which changes what an adaptive receive path does.
    """
    with tempfile.NamedTemporaryFile(suffix=".count") as f:
        pids = tree(pid)
        cmd = (
            [
                "perf",
                "stat",
                "-x,",
                "-e",
                "raw_syscalls:sys_enter",
                "-p",
                ",".join(map(str, pids)),
                "-o",
                f.name,
            ]
            if perf
            else ["strace", "-c", "-f", *[a for p in pids for a in ("-p", str(p))], "-o", f.name]
        )
        tracer = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        res = load(exe, mode, port, conns=conns, size=size, seconds=seconds)
        time.sleep(0.2)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(timeout=30)
        total = 0
        for line in Path(f.name).read_text().splitlines():
            if perf:
                fields = line.split(",")
                if len(fields) > 2 and fields[2].startswith("raw_syscalls:sys_enter") and fields[0].isdigit():
                    total = int(fields[0])
                continue
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?total$", line)
            if m:
                total = int(m.group(1))
    requests = res["count"] if mode != "sink" else res["bytes"] // size
    return total, max(1, requests)


def measure(
    server: str, scenario: str, exes: dict[str, Path], seconds: float, counter: str | None
) -> dict[str, Any]:
    mode, conns, size, smode, _unit = SCENARIOS[scenario]
    proc, port = start_server(server_cmd(server, smode, exes), pool_cpus(server) if is_pool(server) else "")
    try:
        if mode == "idle":
            base = peak_rss_kib(proc.pid)
            load(exes["loadgen"], "idle", port, conns=conns, size=1, seconds=1.0)
            return {"rss_kib": peak_rss_kib(proc.pid), "rss_base_kib": base}
        load(exes["loadgen"], mode, port, conns=conns, size=size, seconds=min(0.5, seconds))  # warm-up
        c0, l0 = cpu_seconds(proc.pid), children_cpu()
        res = load(exes["loadgen"], mode, port, conns=conns, size=size, seconds=seconds)
        cpu, client = cpu_seconds(proc.pid) - c0, children_cpu() - l0
        requests = res["count"] if mode != "sink" else res["bytes"] // size
        row: dict[str, Any] = {
            "per_s": requests / res["seconds"],
            "mb_s": res["bytes"] / res["seconds"] / 1e6 if mode == "sink" else None,
            "p50_us": res["p50_us"],
            "p99_us": res["p99_us"],
            "cpu_us_per_req": cpu / max(1, requests) * 1e6,
            "client_cpu": client / res["seconds"],
            "rss_kib": peak_rss_kib(proc.pid),
        }
        if counter is not None:
            calls, reqs = count_syscalls(
                proc.pid,
                exes["loadgen"],
                mode,
                port,
                conns=conns,
                size=size,
                seconds=min(1.0, seconds),
                perf=counter == "perf",
            )
            row["syscalls_per_req"] = calls / reqs
        return row
    finally:
        if is_pool(server):  # the supervisor stops its workers (a SIGKILL would leave it to them)
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.kill()
        proc.wait()


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median throughput, plus every round's throughput (the spread)."""
    if "per_s" not in rows[0]:
        return rows[0]
    ordered = sorted(rows, key=lambda r: r["per_s"])
    mid = dict(ordered[(len(ordered) - 1) // 2])
    mid["rounds_per_s"] = [r["per_s"] for r in rows]
    for r in rows:  # syscalls were counted in the first round only
        if "syscalls_per_req" in r:
            mid["syscalls_per_req"] = r["syscalls_per_req"]
    mid["cpu_us_per_req"] = statistics.median(r["cpu_us_per_req"] for r in rows)
    return mid


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    lines = []
    for scenario, rows in results.items():
        unit = SCENARIOS[scenario][4]
        lines.append(f"\n{scenario}  (per {unit})")
        if scenario.startswith("idle"):
            base = rows.get("trio", {}).get("rss_kib")
            for server, r in rows.items():
                ratio = f"{r['rss_kib'] / base:5.2f}x trio" if base else ""
                lines.append(f"  {server:16} peak RSS {r['rss_kib'] / 1024:7.1f} MiB  {ratio}")
            continue
        trio_rate = rows.get("trio", {}).get("per_s")
        c_rate = rows.get("c_liburing", {}).get("per_s")
        lines.append(
            f"  {'server':16} {'req/s':>10} {'MB/s':>8} {'p50 us':>8} {'p99 us':>8} "
            f"{'cpu us/req':>10} {'sys/req':>8} {'RSS MiB':>8} {'client':>6} {'spread':>7} "
            f"{'vs trio':>8} {'vs C':>6}"
        )
        for server, r in rows.items():
            mb = f"{r['mb_s']:8.0f}" if r.get("mb_s") else f"{'':8}"
            vt = f"{r['per_s'] / trio_rate:7.2f}x" if trio_rate else ""
            vc = f"{r['per_s'] / c_rate:5.2f}x" if c_rate else ""
            sc = f"{r['syscalls_per_req']:8.2f}" if "syscalls_per_req" in r else f"{'':8}"
            runs = r.get("rounds_per_s", [r["per_s"]])
            spread = f"±{50 * (max(runs) - min(runs)) / r['per_s']:.0f}%"
            lines.append(
                f"  {server:16} {r['per_s']:10.0f} {mb} {r['p50_us']:8.1f} {r['p99_us']:8.1f} "
                f"{r['cpu_us_per_req']:10.2f} {sc} {r['rss_kib'] / 1024:8.1f} "
                f"{100 * r.get('client_cpu', 0):5.0f}% {spread:>7} {vt:>8} {vc:>6}"
            )
    return "\n".join(lines)


def measure_floor() -> str:
    """One run of ``floor.py`` on the server's CPU: its printout."""
    return subprocess.run(
        ["taskset", "-c", SERVER_CPU, sys.executable, str(HERE / "floor.py")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def median_floor(runs: list[str]) -> str:
    """``floor.py``'s printout with each line's figure the median of ``runs`` (one per round):
    its runs differ from each other by up to a third on a busy VM, each line its own way."""
    number = re.compile(r"\d+\.\d+")
    per_line = [text.rstrip().splitlines() for text in runs]
    out = []
    for i, line in enumerate(per_line[0]):
        values = [float(m.group(0)) for lines in per_line if i < len(lines) if (m := number.search(lines[i]))]
        if not values:
            out.append(line)
            continue
        mid = statistics.median(values)
        shown = number.sub(f"{mid:.2f}", line, count=1)
        out.append(re.sub(r"at most [\d,]+", f"at most {1e6 / mid:,.0f}", shown))
    return "\n".join(out) + "\n"


def receiver_ratios(
    results: dict[str, dict[str, dict[str, Any]]], rounds: dict[str, dict[str, list[dict[str, Any]]]]
) -> str:
    """The README's ``async for`` receiver loop against ``receive_batch`` and the C sink.

    The C server runs the same sink in all three bulk rows (it has no zero-copy mode), so
    its CPU per 64 KiB is also given as the median over all of its sink runs in this run:
    on a shared VM one row's three rounds differ by up to a fifth.
    """
    batch = results.get("bulk 1x64KiB zero-copy", {})
    loop = results.get("bulk 1x64KiB zero-copy async for", {})
    c_runs = [
        r["cpu_us_per_req"]
        for sc in ("bulk 1x64KiB", "bulk 1x64KiB zero-copy", "bulk 1x64KiB zero-copy async for")
        for r in rounds.get(sc, {}).get("c_liburing", [])
    ]
    lines = []
    for server in ("trio_uring", "trio_uring_ring"):
        b, f = batch.get(server), loop.get(server)
        if not b or not f:
            continue
        loop_cpu, batch_cpu = f["cpu_us_per_req"], b["cpu_us_per_req"]
        line = (
            f"{server:16} async for {loop_cpu:6.2f}, receive_batch {batch_cpu:6.2f} us CPU per 64 KiB: "
            f"async for = {loop_cpu / batch_cpu:4.2f}x receive_batch"
        )
        cb, cf = batch.get("c_liburing"), loop.get("c_liburing")
        if cb and cf:
            line += (
                f"; against the C sink of the same row: async for {loop_cpu / cf['cpu_us_per_req']:4.2f}x, "
                f"receive_batch {batch_cpu / cb['cpu_us_per_req']:4.2f}x"
            )
        if c_runs:
            c = statistics.median(c_runs)
            line += (
                f"; against the C sink's median over its {len(c_runs)} sink runs ({c:.2f}): "
                f"async for {loop_cpu / c:4.2f}x, receive_batch {batch_cpu / c:4.2f}x"
            )
        lines.append(line)
    return "\n\nThe zero-copy receiver's two loops:\n" + "\n".join(lines) if lines else ""


def floor_ratios(results: dict[str, dict[str, dict[str, Any]]], floor: str) -> str:
    """Each trio server's CPU per request against what no trio backend can go below: the
    scheduler's floor for the scenario's shape plus the kernel's work (the C server's CPU
    per request). Echo scenarios per round trip; churn per connection."""
    shapes = {
        "echo": r"^trio_uring\.run\s+([\d.]+) us of scheduler per echo",
        "churn": r"^trio_uring\.run\s+([\d.]+) us of scheduler per connection, churn-shaped, closed at once",
    }
    floors = {k: float(m.group(1)) for k, rx in shapes.items() if (m := re.search(rx, floor, re.M))}
    lines = []
    for scenario, rows in results.items():
        c = rows.get("c_liburing", {}).get("cpu_us_per_req")
        sched = floors.get(scenario.split()[0])
        if sched is None or not c:
            continue
        bound = sched + c
        unit = "round trip" if scenario.startswith("echo") else "connection"
        for server in ("trio_uring", "trio_uring_ring", "trio"):
            r = rows.get(server)
            if r:
                lines.append(
                    f"{scenario:14} {server:16} {r['cpu_us_per_req']:6.2f} us CPU per {unit} = "
                    f"{r['cpu_us_per_req'] / bound:4.2f}x the floor ({sched:.2f} scheduler + {c:.2f} kernel)"
                )
    return "\n\nCPU per request against the floor:\n" + "\n".join(lines) if lines else ""


def chart(results: dict[str, dict[str, dict[str, Any]]], path: Path) -> bool:
    try:
        import matplotlib  # noqa: PLC0415 - optional, only for the picture

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return False
    scen = [s for s in results if not s.startswith("idle")]
    servers = sorted(
        {sv for s in scen for sv in results[s]},
        key=lambda sv: SERVERS.index(sv) if sv in SERVERS else len(SERVERS),
    )
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / max(1, len(servers))
    for i, sv in enumerate(servers):
        vals, lo, hi = [], [], []
        for s in scen:
            base = results[s].get("trio", {}).get("per_s")
            r = results[s].get(sv)
            v = r["per_s"] / base if r and base else 0
            runs = [x / base for x in r.get("rounds_per_s", [r["per_s"]])] if r and base else [0]
            vals.append(v)
            lo.append(max(0.0, v - min(runs)))
            hi.append(max(0.0, max(runs) - v))
        # the bar is the median round, the error bar every round's range (the spread column)
        ax.bar([x + i * width for x in range(len(scen))], vals, width, label=sv, yerr=[lo, hi], capsize=2)
    ax.set_xticks([x + width * (len(servers) - 1) / 2 for x in range(len(scen))], scen)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_ylabel("throughput relative to stock trio")
    ax.set_title(f"trio-uring benchmarks (Linux {kernel()}, {time.strftime('%Y-%m-%d')})")
    ax.legend(fontsize=8, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="1 s per measurement")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=5, help="rounds per scenario; the median is shown")
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--no-syscalls", action="store_true", help="skip the syscall counts")
    ap.add_argument("--update-readme", action="store_true")
    ap.add_argument("--worker-cpus", default="0,1", help="CPUs for trio_uring_wN's workers (first N)")
    ap.add_argument("--client-cpu", default="1", help="the load generator's CPU")
    args = ap.parse_args()
    global WORKER_CPUS, CLIENT_CPU
    WORKER_CPUS, CLIENT_CPU = ",".join(expand_cpus(args.worker_cpus)), args.client_cpu
    seconds = 1.0 if args.quick else args.seconds
    exes = build_native()
    servers = [s for s in args.servers.split(",") if s]
    for sv in servers:
        if sv not in SERVERS and not is_pool(sv):
            raise SystemExit(f"unknown server {sv!r}")
    counter = None
    if not args.no_syscalls:
        counter = "perf" if _perf_counts_syscalls() else "strace" if shutil.which("strace") else None
    results: dict[str, dict[str, dict[str, Any]]] = {}
    scenarios = args.scenarios.split(",")
    for sc in scenarios:
        if sc not in SCENARIOS:
            raise SystemExit(f"unknown scenario {sc!r}; one of {', '.join(SCENARIOS)}")
    total = sum(
        sum(1 for sv in servers if not is_pool(sv) or SCENARIOS[sc][3] == "echo")
        * (1 if sc.startswith("idle") else args.repeat)
        for sc in scenarios
    )
    done = 0
    started = time.monotonic()
    rounds: dict[str, dict[str, list[dict[str, Any]]]] = {sc: {} for sc in scenarios}
    floors: list[str] = []
    # Rounds outermost: each round measures every scenario and server in turn, so drift on
    # the machine hits every row alike and ratios between rows (``async for`` against
    # ``receive_batch``, a server against the floor) compare samples taken minutes apart.
    for rnd in range(args.repeat):
        for scenario in scenarios:
            if scenario.startswith("idle") and rnd > 0:
                continue  # peak RSS: one round says it
            for server in servers:
                if is_pool(server) and SCENARIOS[scenario][3] != "echo":
                    continue  # worker pools serve the echo scenarios only
                left = total - done
                eta = (time.monotonic() - started) / done * left if done else 0
                print(
                    f"[{done + 1}/{total}, {left - 1} left, ~{eta / 60:.0f} min] "
                    f"{scenario} / {server} / round {rnd + 1}",
                    flush=True,
                    file=sys.stderr,
                )
                done += 1
                try:
                    row = measure(server, scenario, exes, seconds, counter if rnd == 0 else None)
                except (ImportError, RuntimeError, subprocess.CalledProcessError) as exc:
                    print(f"skipped {server} / {scenario}: {exc}", file=sys.stderr)
                    continue
                rounds[scenario].setdefault(server, []).append(row)
        floors.append(measure_floor())
    for scenario, by_server in rounds.items():
        for server, rows in by_server.items():
            results.setdefault(scenario, {})[server] = median_row(rows)
    head = (
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, kernel {kernel()}, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d')}; server on CPU "
        f"{SERVER_CPU} (worker pools on {WORKER_CPUS}), load generator on CPU {CLIENT_CPU}; "
        f"median of {args.repeat} interleaved rounds (every scenario and server in each) of "
        f"{seconds:g} s; syscalls counted by {counter or 'nothing'}"
    )
    floor = median_floor(floors)
    text = (
        f"{head}\n{table(results)}\n\nthe scheduler's floor (benchmarks/floor.py, the median of "
        f"{len(floors)} runs, one per round, line by line):\n{floor.rstrip()}"
        + floor_ratios(results, floor)
        + receiver_ratios(results, rounds)
    )
    print(text)
    RESULTS.mkdir(exist_ok=True)
    # Only a run of the whole suite replaces the published results; a partial run (some
    # servers or scenarios) goes to partial.* so experiments never overwrite them.
    full = set(servers) == set(SERVERS) and set(scenarios) == set(SCENARIOS)
    name = "latest" if full else "partial"
    (RESULTS / f"{name}.json").write_text(json.dumps({"header": head, "results": results}, indent=1))
    (RESULTS / f"{name}.txt").write_text(text + "\n")
    has_png = chart(results, RESULTS / f"{name}.png")
    if args.update_readme and full:
        readme = ROOT / "README.md"
        block = (
            "<!-- bench:start -->\n```\n"
            + text
            + "\n```\n"
            + ("![benchmarks](benchmarks/results/latest.png)\n" if has_png else "")
            + "<!-- bench:end -->"
        )
        body = readme.read_text()
        body = re.sub(r"<!-- bench:start -->.*<!-- bench:end -->", lambda _: block, body, flags=re.S)
        readme.write_text(body)


if __name__ == "__main__":
    main()
