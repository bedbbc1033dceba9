"""The hardware zcrx path (``mode="zcrx"``) on a simulated NIC: runs in the NIC lane.

``make nic-lane`` runs this file inside ``scripts/kernel-vm --nic``: two netdevsim ports
(patched for zcrx, see scripts/nic/netdevsim-zcrx.patch) in two network namespaces, header
split on. The sender runs in the peer namespace, so every byte crosses the simulated NIC.
Outside the lane every test is skipped. Each test prints what it measured (``-s``).
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import trio

import trio_uring
from trio_uring import UringSocketStream, open_zc_receiver
from trio_uring.socket import from_stdlib_socket

from ._nic import MiB, Nic, digest

NIC = Nic.from_env()
pytestmark = pytest.mark.skipif(
    NIC is None, reason="needs the NIC lane (simulated zcrx NIC): make nic-lane, or scripts/kernel-vm --nic"
)


@pytest.fixture
def nic() -> Nic:
    assert NIC is not None
    return NIC


async def receive_all(rx: Any, h: Any, *, timeout: float) -> None:
    with trio.fail_after(timeout):
        async for lease in rx:
            with lease:
                h.update(lease.data)


def zc_transfer(
    nic: Nic,
    total: int,
    seed: int,
    *,
    queue: int,
    steer_to: int | None,
    area_size: int,
    mode: str = "zcrx",
    timeout: float = 120,
) -> Any:
    """``total`` bytes from the peer namespace through a receiver on ``queue``, the flow
    steered to ``steer_to`` (None: wherever the NIC puts it); bytes checked; statistics."""
    out: list[Any] = []
    with nic.listener() as lsock:
        port = lsock.getsockname()[1]
        steer = nic.steer(port, steer_to) if steer_to is not None else _null()
        with steer, nic.sender(lsock, total, seed) as conn:

            async def main() -> None:
                h = hashlib.sha256()
                stream = UringSocketStream(from_stdlib_socket(conn))
                async with (
                    stream,
                    open_zc_receiver(
                        stream, interface=nic.interface, queue=queue, area_size=area_size, mode=mode
                    ) as rx,
                ):
                    await receive_all(rx, h, timeout=timeout)
                    out.append(rx.statistics())
                out.append(h.digest())

            trio_uring.run(main)
    st, got = out
    assert got == digest(total, seed), "the bytes differ from what the peer sent"
    return st


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_smoke_4MiB_on_the_bound_queue(nic: Nic) -> None:
    before = nic.sim_stats()
    st = zc_transfer(nic, 4 * MiB, 1, queue=1, steer_to=1, area_size=4 * MiB)
    after = nic.sim_stats()
    print(f"\n{st}\nsim: {before} -> {after}")
    assert st.bytes == 4 * MiB
