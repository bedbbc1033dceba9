"""A zero-copy sink: receive a stream through a ZeroCopyReceiver, check every byte, print
the receiver's mode and statistics.

    python examples/zero_copy_sink.py [--mib 256] [--interface IF]

A sender pushes the stream over loopback; the receiver hashes each lease in place (no
copy) and gives it back. The mode is the best this machine offers (see
``python -m trio_uring doctor``); with --interface it tries zcrx on that NIC first (loopback
traffic never reaches a NIC, so that needs a sender on another machine to be worth it).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import socket
import time

import trio

import trio_uring


async def main(mib: int, interface: str | None) -> None:
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen()
        client = socket.create_connection(lsock.getsockname())
        server, _ = lsock.accept()
    block = os.urandom(1 << 20)
    expected = hashlib.sha256(block * mib).digest()
    got = hashlib.sha256()

    async def send() -> None:
        stream = trio_uring.UringSocketStream(trio_uring.socket.from_stdlib_socket(client))
        async with stream:
            for _ in range(mib):
                await stream.send_all(block)
            await stream.send_eof()

    t0 = time.perf_counter()
    async with trio.open_nursery() as n:
        n.start_soon(send)
        rx_sock = trio_uring.socket.from_stdlib_socket(server)
        async with trio_uring.open_zc_receiver(rx_sock, interface=interface) as rx:
            async for lease in rx:
                with lease:
                    got.update(lease.data)
            st = rx.statistics()
        rx_sock.close()
    dt = time.perf_counter() - t0
    print(
        f"zero-copy receive, mode {st.mode!r}: {mib} MiB in {dt:.2f}s ({mib / dt:,.0f} MiB/s), "
        f"{st.leases} leases, all returned: {st.refills == st.leases}, "
        f"bytes exact: {got.digest() == expected}"
    )
    if st.fallback_reason:
        print(f"  (modes skipped: {st.fallback_reason})")
    print(f"  statistics: {st}")
    if got.digest() != expected:
        raise SystemExit("the received bytes differ")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--interface")
    args = ap.parse_args()
    trio_uring.run(main, args.mib, args.interface)
