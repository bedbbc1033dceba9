"""``python -m trio_uring``: ``doctor`` (what this machine's io_uring can do, for humans) and
``serve`` (a handler on a pool of worker processes)."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from typing import Any

from . import __version__
from ._core._errors import UringUnavailable
from ._core._probe import ProbeReport, probe
from ._net._steering import check_workers
from .zerocopy._doctor import check_interface
from .zerocopy._sources import SOURCES


def _modes(report: ProbeReport, interface: str | None) -> list[str]:
    """The receive modes this machine can use, best first (each mode describes itself)."""
    return [line for src in SOURCES.values() if (line := src.describe(report, interface)) is not None]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trio_uring")
    parser.add_argument("--version", action="version", version=f"trio-uring {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    doc = sub.add_parser("doctor", help="report io_uring and zero-copy receive capabilities")
    doc.add_argument("--interface", help="also check this NIC for zero-copy receive (read-only)")
    doc.add_argument("--queue", type=int, default=0, help="the rx queue zcrx would use (default 0)")
    doc.add_argument(
        "--workers",
        type=int,
        help="with --interface: can N workers own queues QUEUE..QUEUE+N-1 (serve --zc-*)",
    )
    srv = sub.add_parser("serve", help="serve module:handler from worker processes (serve_tcp_workers)")
    srv.add_argument("handler", help="module:function, an async def handler(stream) importable from here")
    srv.add_argument("--port", type=int, required=True, help="TCP port (0: any free one, printed)")
    srv.add_argument("--host", help="address to listen on (default: every address)")
    srv.add_argument("--workers", type=int, help="worker processes (default: usable CPUs)")
    srv.add_argument("--no-affinity", action="store_true", help="do not pin worker i to CPU i")
    srv.add_argument("--grace", type=float, default=10.0, help="seconds connections get at shutdown (10)")
    srv.add_argument("--fallback", action="store_true", help="run on stock trio where io_uring is refused")
    srv.add_argument("--zc-interface", help="zero-copy receive: worker i owns an rx queue of this NIC")
    srv.add_argument("--zc-queues", help="comma-separated rx queues, one per worker (with --zc-interface)")
    args = parser.parse_args(argv)
    if args.command == "doctor":
        report = probe()
        print(report)
        if report.usable:
            print("receive modes     " + ", ".join(_modes(report, args.interface)))
        nic = check_interface(args.interface, args.queue) if args.interface else None
        if nic is not None:
            print()
            print(nic)
        pool = None
        if args.workers is not None:
            if not args.interface or args.workers < 1:
                parser.error("--workers needs --interface and a count >= 1")
            pool = check_workers(args.interface, args.workers, args.queue)
            print()
            print(pool)
        return 0 if report.usable and (nic is None or nic.exists) and (pool is None or pool.ok) else 1
    if args.command == "serve":
        return _serve(parser, args)
    return 2  # pragma: no cover - argparse rejects other commands


def _load_handler(parser: argparse.ArgumentParser, spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        parser.error(f"handler must be module:function, got {spec!r}")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        parser.error(f"cannot load handler {spec!r}: {exc}")
    return obj


def _ignore(signum: int, frame: Any) -> None:
    """Signals outside serve_tcp_workers' own handling: the server is starting or stopped."""


def _serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import trio  # noqa: PLC0415 - the doctor does not need it

    from ._net._workers import WorkersFailed, WorkerStartError, ZcConfig, serve_tcp_workers  # noqa: PLC0415

    handler = _load_handler(parser, args.handler)
    zc = None
    if args.zc_interface or args.zc_queues:
        if not (args.zc_interface and args.zc_queues):
            parser.error("--zc-interface and --zc-queues go together")
        try:
            zc = ZcConfig(args.zc_interface, tuple(int(q) for q in args.zc_queues.split(",")))
        except ValueError as exc:
            parser.error(str(exc))

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            pool = await nursery.start(
                lambda task_status: serve_tcp_workers(
                    handler,
                    args.port,
                    host=args.host,
                    workers=args.workers,
                    cpu_affinity=not args.no_affinity,
                    zc=zc,
                    grace=args.grace,
                    fallback=args.fallback,
                    task_status=task_status,
                )
            )
            where = ", ".join(f"{a[0]}:{a[1]}" for a in pool.addresses)
            print(
                f"serving {args.handler} on {where} with {pool.workers} workers "
                f"(pids {' '.join(map(str, pool.pids))}; steering: {pool.steering})",
                flush=True,
            )

    # serve_tcp_workers handles SIGINT and SIGTERM while it runs; one that arrives as it
    # returns (the group's second Ctrl-C, say) must not turn a clean stop into a traceback.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _ignore)
    try:
        try:
            trio.run(main)
        except BaseExceptionGroup as group:
            leaf: BaseException = group
            while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
                leaf = leaf.exceptions[0]
            raise leaf from None
    except (ValueError, TypeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, UringUnavailable, WorkerStartError, WorkersFailed) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _main_closing_pipes() -> int:
    """``main`` for the command line: ``doctor | head`` ends quietly, without a traceback."""
    if sys.stdout is None:  # started with stdout closed: nobody to tell
        return 1
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader left: nothing more can be said, and the interpreter's own final flush
        # must not fail again on the same pipe.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return code


if __name__ == "__main__":
    sys.exit(_main_closing_pipes())
