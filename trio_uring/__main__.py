"""``python -m trio_uring doctor``: what this machine's io_uring can do, for humans."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from ._core._probe import ProbeReport, probe
from .zerocopy._doctor import check_interface


def _modes(report: ProbeReport, interface: str | None) -> list[str]:
    modes = []
    if report.zcrx_kernel.startswith("available") and report.cap_net_admin:
        modes.append("zcrx (with a capable NIC: --interface IF)" if not interface else "zcrx (see below)")
    if report.zcrx_nodev:
        modes.append("zcrx-nodev")
    modes.append("copy")
    return modes


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
        if args.interface:
            print()
            print(check_interface(args.interface, args.queue))
        return 0 if report.usable else 1
    return 2  # pragma: no cover - argparse rejects other commands


if __name__ == "__main__":
    sys.exit(main())
