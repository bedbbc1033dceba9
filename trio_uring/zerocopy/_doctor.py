"""NIC doctor: can this interface do zero-copy receive, and what would have to change?

Reads what it can without privileges or side effects — sysfs, and ``ethtool``/``ip`` output
where those tools exist — and prints findings with the exact commands to fix each one.
It never changes a setting. Only when asked (``attempt=True``, ``doctor --try``) does it
register the queue for a moment, on a ring of its own: the kernel's answer then replaces the
guess from the driver's name (the queue leaves the kernel's normal receive path while the
registration lasts, a few milliseconds).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import attrs

from ._zcrx import ynl_header_split

__all__ = ["NicReport", "check_interface"]

#: Drivers whose mainline versions implement the queue API and memory-provider page pools.
ZCRX_DRIVERS = {
    "bnxt_en": "Broadcom NetXtreme-C/E",
    "mlx5_core": "NVIDIA ConnectX-6/7",
    "fbnic": "Meta fbnic",
    "gve": "Google gVNIC",
}


@attrs.frozen
class NicReport:
    interface: str
    exists: bool
    driver: str | None = None
    rx_queues: int = 0
    findings: tuple[str, ...] = ()
    fixes: tuple[str, ...] = ()
    ok: bool = False

    def __str__(self) -> str:
        lines = [f"interface         {self.interface}"]
        if not self.exists:
            return "\n".join([*lines, "  not found in this network namespace (see `ip link`)"])
        lines.append(f"driver            {self.driver or 'none (software device)'}")
        lines.append(f"rx queues         {self.rx_queues}")
        lines += [f"  - {f}" for f in self.findings]
        if self.fixes:
            lines.append("to make zcrx possible:")
            lines += [f"  {c}" for c in self.fixes]
        lines.append("zcrx on this NIC  " + ("looks possible" if self.ok else "not possible as configured"))
        return "\n".join(lines)


def _run(*cmd: str) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def check_interface(
    interface: str, queue: int = 0, sysfs: Path = Path("/sys/class/net"), *, attempt: bool = False
) -> NicReport:
    """Inspect ``interface`` (read-only) for the zcrx requirements on ``queue``; with
    ``attempt``, also register the queue for a moment and let the kernel decide."""
    base = sysfs / interface
    if not base.exists():
        return NicReport(interface=interface, exists=False)
    findings: list[str] = []
    fixes: list[str] = []
    driver = None
    dev = base / "device"
    if (dev / "driver").exists():
        driver = os.path.basename(os.path.realpath(dev / "driver"))
    rxq = len(list((base / "queues").glob("rx-*"))) if (base / "queues").exists() else 0
    ok = True
    if driver is None:
        ok = False
        findings.append(
            "a software device (no hardware behind it): zcrx registration fails with "
            "EOPNOTSUPP; use a NIC, or mode='zcrx-nodev' on Linux >= 7.1"
        )
    elif driver not in ZCRX_DRIVERS:
        ok = False
        findings.append(
            f"driver {driver!r} is not known to support io_uring zcrx (known: "
            f"{', '.join(sorted(ZCRX_DRIVERS))})"
        )
    else:
        findings.append(f"driver {driver} ({ZCRX_DRIVERS[driver]}) supports zcrx in recent kernels")
    if driver is not None:
        if queue >= rxq:
            ok = False
            findings.append(f"queue {queue} does not exist ({rxq} rx queues)")
            fixes.append(f"ethtool -L {interface} combined {queue + 1}")
        elif rxq < 2:
            findings.append("only one rx queue: steering zcrx traffic to its own queue needs two or more")
            fixes.append(f"ethtool -L {interface} combined 2")
        rings = _run("ethtool", "-g", interface)
        if rings is None:
            findings.append(
                "could not read ring settings (ethtool missing or not permitted): check "
                f"`ethtool -g {interface}` shows 'TCP data split: on' and 'HDS thresh: 0'"
            )
        else:
            split = re.search(r"TCP data split:\s*(\S+)", rings)
            thresh = re.search(r"HDS thresh:\s*(\d+)", rings)
            if not split or split.group(1).lower() != "on":
                ok = False
                findings.append(f"header/data split is {split.group(1) if split else 'not reported'}")
                fixes.append(f"ethtool -G {interface} tcp-data-split on   # ethtool >= 6.12, or:")
                fixes.append(f"  {ynl_header_split(interface)}")
            if thresh and thresh.group(1) != "0":
                ok = False
                findings.append(f"hds-thresh is {thresh.group(1)}, must be 0")
                fixes.append(f"ethtool -G {interface} hds-thresh 0")
        link = _run("ip", "-d", "link", "show", interface) or ""
        if re.search(r"\bxdp", link):
            ok = False
            findings.append("an XDP program is attached (registration fails with EEXIST)")
            fixes.append(f"ip link set {interface} xdp off")
        fixes.append(f"ethtool -X {interface} equal {max(1, queue)}   # keep RSS off the zcrx queue")
        for flow in ("tcp4", "tcp6"):
            fixes.append(
                f"ethtool -N {interface} flow-type {flow} dst-port PORT action {queue}   # steer your flows"
            )
        if attempt:
            ok = _attempt(interface, queue, findings)
    return NicReport(
        interface=interface,
        exists=True,
        driver=driver,
        rx_queues=rxq,
        findings=tuple(findings),
        fixes=tuple(fixes) if driver else (),
        ok=ok,
    )


def _attempt(interface: str, queue: int, findings: list[str]) -> bool:
    """Register ``queue`` for a moment: the kernel's answer, as a finding. True if it worked."""
    from .._core._probe import _zcrx_attempt  # noqa: PLC0415 - only when asked to try
    from ._zcrx import registration_error  # noqa: PLC0415 - only when asked to try

    ret = _zcrx_attempt(0, interface, queue)
    if ret == 0:
        findings.append(f"registering queue {queue} worked (and was undone): zcrx is possible here")
        return True
    err = registration_error(ret, interface=interface, queue=queue, nodev=False)
    findings.append(f"registering queue {queue} failed: {err}")
    return False
