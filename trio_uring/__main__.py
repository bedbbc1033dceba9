"""``python -m trio_uring doctor``: what this machine's io_uring can do, for humans."""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from ._core._probe import ProbeReport, probe
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
        return 0 if report.usable and (nic is None or nic.exists) else 1
    return 2  # pragma: no cover - argparse rejects other commands


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
