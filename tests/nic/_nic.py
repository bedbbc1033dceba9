"""Helpers for the NIC lane (``scripts/kernel-vm --nic``): the NIC's knobs and counters, a
sender in the peer namespace, and the expected bytes.

In the lane the NIC is the zcrx-patched netdevsim (``TU_NIC_DEBUGFS`` set: steering and the
simulated DMA's counters through debugfs). On a machine with a real zcrx NIC (see
docs/nic-lane.md) ``TU_NIC_DEBUGFS`` is unset: flows are steered with ``ethtool -N`` and the
simulated NIC's counters read as empty.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from tests.nic._sender import blocks

MiB = 1 << 20
SIM_COUNTERS = (
    "steered_packets",
    "hds_packets",
    "hds_payload_bytes",
    "hds_niovs",
    "hds_no_buffer_drops",
    "hds_too_big",
)
SENDER = Path(__file__).with_name("_sender.py")
REPO = Path(__file__).resolve().parents[2]


def digest(total: int, seed: int) -> bytes:
    h = hashlib.sha256()
    for b in blocks(total, seed):
        h.update(b)
    return h.digest()


@attrs.frozen
class Nic:
    """The receiving simulated NIC and its peer, from the lane's environment."""

    interface: str
    addr: str
    queues: int
    peer_ns: str
    peer_addr: str
    debugfs: Path | None
    ynl_tool: str

    @classmethod
    def from_env(cls) -> Nic | None:
        e = os.environ
        if "TU_NIC_IF" not in e:
            return None
        return cls(
            interface=e["TU_NIC_IF"],
            addr=e["TU_NIC_ADDR"],
            queues=int(e["TU_NIC_QUEUES"]),
            peer_ns=e["TU_NIC_PEER_NS"],
            peer_addr=e["TU_NIC_PEER_ADDR"],
            debugfs=Path(e["TU_NIC_DEBUGFS"]) if e.get("TU_NIC_DEBUGFS") else None,
            ynl_tool=e.get("TU_NIC_YNL") or str(REPO / "scripts" / "nic" / "ynl"),
        )

    @property
    def ifindex(self) -> int:
        return socket.if_nametoindex(self.interface)

    # ---- the kernel's netlink view (ynl) ----------------------------------------------------
    def ynl(self, family: str, *args: str, check: bool = True) -> Any:
        out = subprocess.run(
            [self.ynl_tool, family, "--output-json", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and out.returncode:
            raise RuntimeError(f"ynl {family} {' '.join(args)}: {out.stderr.strip() or out.stdout.strip()}")
        text = out.stdout.strip()
        return json.loads(text) if text.startswith(("{", "[")) else text

    def set_header_split(self, on: bool) -> None:
        req: dict[str, Any] = {
            "header": {"dev-name": self.interface},
            "tcp-data-split": "enabled" if on else "disabled",
        }
        if on:
            req["hds-thresh"] = 0
        self.ynl("ethtool", "--do", "rings-set", "--json", json.dumps(req))

    def rings(self) -> dict[str, Any]:
        req = {"header": {"dev-name": self.interface}}
        return self.ynl("ethtool", "--do", "rings-get", "--json", json.dumps(req))  # type: ignore[no-any-return]

    def queue(self, q: int) -> dict[str, Any]:
        req = {"ifindex": self.ifindex, "id": q, "type": "rx"}
        return self.ynl("netdev", "--do", "queue-get", "--json", json.dumps(req))  # type: ignore[no-any-return]

    def bound_queues(self) -> list[int]:
        """Rx queues a memory provider (io_uring zcrx) is bound to, as the kernel reports."""
        req = json.dumps({"ifindex": self.ifindex})
        queues = self.ynl("netdev", "--dump", "queue-get", "--json", req)
        return sorted(q["id"] for q in queues if q.get("type") == "rx" and "io-uring" in q)

    def page_pools(self) -> list[dict[str, Any]]:
        """This NIC's page pools, each with its stats (``netdev page-pool-stats-get``)."""
        pools = [p for p in self.ynl("netdev", "--dump", "page-pool-get") if p.get("ifindex") == self.ifindex]
        stats = {
            s["info"]["id"]: s for s in self.ynl("netdev", "--dump", "page-pool-stats-get") if "info" in s
        }
        for p in pools:
            p["stats"] = stats.get(p["id"], {})
        return pools

    def io_uring_pool_stats(self) -> dict[str, int]:
        """Summed allocation stats of the page pools that hand out io_uring area buffers."""
        total: dict[str, int] = {}
        for p in self.page_pools():
            if "io-uring" in p:
                for k, v in p["stats"].items():
                    if isinstance(v, int):
                        total[k] = total.get(k, 0) + v
        return total

    # ---- the simulated NIC's own knobs (debugfs of the patched netdevsim) ---------------
    @property
    def simulated(self) -> bool:
        return self.debugfs is not None

    def sim_stats(self) -> dict[str, int]:
        """The simulated NIC's counters (debugfs zcrx_stats: :data:`SIM_COUNTERS`, then per rx
        queue N ``rxqN_packets`` and ``rxqN_hds_payload_bytes``); on a real NIC, the
        :data:`SIM_COUNTERS` all zero."""
        if self.debugfs is None:
            return dict.fromkeys(SIM_COUNTERS, 0)
        text = (self.debugfs / "zcrx_stats").read_text()
        return {k: int(v) for k, v in (line.split() for line in text.splitlines())}

    @contextlib.contextmanager
    def steer(self, port: int, queue: int) -> Iterator[None]:
        """Steer TCP traffic to ``port`` onto rx ``queue``: an ntuple rule (simulated by the
        patched netdevsim's debugfs knob in the lane, ``ethtool -N`` on a real NIC)."""
        if self.debugfs is not None:
            (self.debugfs / "zcrx_steer").write_text(f"{port} {queue}")
            try:
                yield
            finally:
                (self.debugfs / "zcrx_steer").write_text(f"{port} -1")
            return
        rule_spec = ["flow-type", "tcp4", "dst-port", str(port), "action", str(queue)]
        cmd = ["ethtool", "-N", self.interface, *rule_spec]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=True)
        rule = re.search(r"Added rule with ID (\d+)", out.stdout + out.stderr)
        try:
            yield
        finally:
            if rule:
                delete = ["ethtool", "-N", self.interface, "delete", rule.group(1)]
                subprocess.run(delete, timeout=30, check=False)

    # ---- traffic ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def listener(self) -> Iterator[socket.socket]:
        with socket.socket() as lsock:
            lsock.bind((self.addr, 0))
            lsock.listen()
            yield lsock

    @contextlib.contextmanager
    def sender(
        self, lsock: socket.socket, total: int, seed: int, *, check: bool = True
    ) -> Iterator[socket.socket]:
        """Start a sender of ``total`` bytes in the peer namespace; yield the accepted socket.

        On exit the sender must have finished (within 120 s), cleanly if ``check``."""
        port = lsock.getsockname()[1]
        cmd = ["ip", "netns", "exec", self.peer_ns, sys.executable, str(SENDER)]
        proc = subprocess.Popen(
            [*cmd, self.addr, str(port), str(total), str(seed)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            lsock.settimeout(30)
            conn, _ = lsock.accept()
            conn.setblocking(False)
            yield conn
        finally:
            try:
                _, err = proc.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, err = proc.communicate()
            if check and proc.returncode and sys.exc_info()[0] is None:
                raise AssertionError(f"the sender failed ({proc.returncode}): {err.strip()}")
