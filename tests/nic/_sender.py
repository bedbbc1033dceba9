"""The NIC lane's sender: ``python tests/nic/_sender.py ADDR PORT TOTAL SEED``.

Runs in the peer namespace (``ip netns exec $TU_NIC_PEER_NS``), so its packets cross the
simulated wire. Connects (retrying for at most 10 s), sends TOTAL bytes of the seeded
pattern of :mod:`tests.nic._nic`, half-closes, and waits (at most 60 s) for the receiver
to close. Plain blocking sockets: the sender is not under test.
"""

from __future__ import annotations

import random
import socket
import sys
import time

BLOCK = 256 * 1024


def blocks(total: int, seed: int):  # type: ignore[no-untyped-def]
    base = random.Random(seed).randbytes(BLOCK)
    for k in range(total // BLOCK):
        yield k.to_bytes(8, "big") + base[8:]
    rest = total % BLOCK
    if rest:
        yield ((total // BLOCK).to_bytes(8, "big") + base[8:])[:rest]


def main() -> int:
    addr, port, total, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    deadline = time.monotonic() + 10
    while True:
        try:
            s = socket.create_connection((addr, port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with s:
        s.settimeout(60)
        for b in blocks(total, seed):
            s.sendall(b)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):  # until the receiver closes
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
