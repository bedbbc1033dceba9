"""Scheduler-pass cost and syscalls per pass: stock trio (epoll) vs trio_uring's IO manager.

    python benchmarks/sched_pass.py            # table + benchmarks/results/sched_pass.json
    python benchmarks/sched_pass.py --quick    # fewer iterations

Workloads (each in a fresh process, same machine, same run):
  pass      ``cancel_shielded_checkpoint()`` loop: one scheduler pass, one get_events(0) each
  stock-rt  trio.SocketStream ping-pong over a socketpair (readiness waits)
  ops-rt    trio_uring.lowlevel.send / recv_into ping-pong (completion ops)

Syscalls are counted with ``strace -f -c`` on two run lengths and differenced, so start-up
and tear-down cancel out; time is measured without strace.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

WORKER = r"""
import socket, sys, time, trio, trio_uring
from trio_uring import lowlevel as ll
runner, workload, n = sys.argv[1], sys.argv[2], int(sys.argv[3])

async def pass_loop():
    for _ in range(n):
        await trio.lowlevel.cancel_shielded_checkpoint()

async def stock_rt():
    a, b = trio.socket.socketpair()
    sa, sb = trio.SocketStream(a), trio.SocketStream(b)
    async def echo():
        for _ in range(n):
            await sb.send_all(await sb.receive_some(64))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo)
        for _ in range(n):
            await sa.send_all(b"x")
            await sa.receive_some(64)

async def ops_rt():
    a, b = socket.socketpair()
    ba, bb = bytearray(64), bytearray(64)
    async def echo():
        for _ in range(n):
            k = await ll.recv_into(b, bb)
            await ll.send(b, memoryview(bb)[:k])
    async with trio.open_nursery() as nursery:
        nursery.start_soon(echo)
        for _ in range(n):
            await ll.send(a, b"x")
            await ll.recv_into(a, ba)

fn = {"pass": pass_loop, "stock-rt": stock_rt, "ops-rt": ops_rt}[workload]
run = trio_uring.run if runner == "trio_uring" else trio.run
t0 = time.perf_counter()
run(fn)
print(time.perf_counter() - t0)
"""

RUNNERS = ("trio", "trio_uring")
WORKLOADS = {"pass": 200_000, "stock-rt": 20_000, "ops-rt": 20_000}


def timed(runner: str, workload: str, n: int) -> float:
    out = subprocess.run(
        [sys.executable, "-c", WORKER, runner, workload, str(n)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return float(out.stdout.strip())


def syscalls(runner: str, workload: str, n: int) -> dict[str, int]:
    with tempfile.NamedTemporaryFile(suffix=".strace") as f:
        subprocess.run(
            ["strace", "-f", "-c", "-o", f.name, sys.executable, "-c", WORKER, runner, workload, str(n)],
            capture_output=True,
            check=True,
            timeout=600,
        )
        counts: dict[str, int] = {}
        for line in Path(f.name).read_text().splitlines():
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)$", line)
            if m and m.group(2) != "total":
                counts[m.group(2)] = int(m.group(1))
        return counts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    scale = 0.1 if args.quick else 1.0
    have_strace = shutil.which("strace") is not None
    results: dict[str, dict[str, dict[str, object]]] = {}
    for workload, base_n in WORKLOADS.items():
        n = max(1000, int(base_n * scale))
        for runner in RUNNERS:
            best = min(timed(runner, workload, n) for _ in range(3))
            row: dict[str, object] = {"n": n, "us_per_iter": best / n * 1e6}
            if have_strace:
                small, big = max(200, n // 10), max(2000, n // 2)
                c1, c2 = syscalls(runner, workload, small), syscalls(runner, workload, big)
                per = {k: (c2.get(k, 0) - c1.get(k, 0)) / (big - small) for k in set(c1) | set(c2)}
                per = {k: round(v, 3) for k, v in per.items() if v > 0.01}
                row["syscalls_per_iter"] = round(sum(per.values()), 3)
                row["syscalls"] = per
            results.setdefault(workload, {})[runner] = row
    print(
        f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cpus, "
        f"kernel {platform.release().split('-')[0]}, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}"
    )
    print(f"{'workload':10} {'backend':11} {'us/iter':>9} {'syscalls/iter':>14}  breakdown")
    for workload, rows in results.items():
        for runner, row in rows.items():
            print(
                f"{workload:10} {runner:11} {row['us_per_iter']:9.2f} "
                f"{row.get('syscalls_per_iter', float('nan')):14.2f}  {row.get('syscalls', '')}"
            )
        base = rows["trio"]["us_per_iter"]
        print(
            f"{'':10} {'ratio':11} {float(base) / float(rows['trio_uring']['us_per_iter']):9.2f}x "
            "(trio_uring speed relative to stock trio)"
        )
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    meta = {"kernel": platform.release().split("-")[0], "date": time.strftime("%Y-%m-%d")}
    (out / "sched_pass.json").write_text(json.dumps({**meta, "results": results}, indent=1))


if __name__ == "__main__":
    main()
