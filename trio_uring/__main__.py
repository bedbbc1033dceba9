"""``python -m trio_uring doctor``: what this machine's io_uring can do, for humans."""

from __future__ import annotations

import argparse
import sys

from ._core._probe import probe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trio_uring")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="report io_uring and zero-copy receive capabilities")
    args = parser.parse_args(argv)
    if args.command == "doctor":
        report = probe()
        print(report)
        return 0 if report.usable else 1
    return 2  # pragma: no cover - argparse rejects other commands


if __name__ == "__main__":
    sys.exit(main())
