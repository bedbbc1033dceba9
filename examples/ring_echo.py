"""An echo server over loopback driven by one io_uring, with no event loop at all.

It shows the native core on its own: multishot accept, multishot recv into a provided
buffer ring, sends from those buffers, and one ``enter()`` per batch. A plain blocking
client thread talks to it and checks every byte.

    python examples/ring_echo.py [--messages N]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import os
import socket
import threading
import time

from trio_uring._native import ffi

from trio_uring._core._bufring import BufferRing
from trio_uring._core._ring import CQE_F_MORE, Ring

ACCEPT, RECV, SEND = 1, 2, 3


def client(port: int, messages: int, result: dict[str, object]) -> None:
    sent, got = hashlib.sha256(), hashlib.sha256()
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as s:
        for i in range(messages):
            msg = os.urandom(1 + i % 200)
            sent.update(msg)
            s.sendall(msg)
            buf = b""
            while len(buf) < len(msg):
                buf += s.recv(4096)
            got.update(buf)
    result["seconds"] = time.perf_counter() - t0
    result["ok"] = sent.digest() == got.digest()


def serve(messages: int) -> None:
    with Ring(256) as ring, socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(16)
        port = lsock.getsockname()[1]
        bufs = BufferRing(ring, entries=64, buf_size=4096)
        ring.prep_accept(lsock, ACCEPT, multishot=True)
        result: dict[str, object] = {}
        t = threading.Thread(target=client, args=(port, messages, result))
        t.start()
        conn = -1
        pending_sends: dict[int, object] = {}  # user_data -> the bytes the kernel sends from
        send_ids = itertools.count(SEND)
        while t.is_alive() or pending_sends:
            batch = ring.enter(1, 0.1)
            recycled = []
            for ud, res, fl in zip(batch.user_data, batch.res, batch.flags):
                if ud == ACCEPT and res >= 0:
                    conn = res
                    ring.prep_recv_select(conn, bufs.bgid, RECV, multishot=True)
                elif ud == RECV:
                    if res <= 0:  # EOF, or the multishot ended (ENOBUFS): re-arm if still open
                        if res < 0:
                            ring.prep_recv_select(conn, bufs.bgid, RECV, multishot=True)
                        continue
                    bid, offset, last = bufs.take(res, fl)
                    data = bytes(bufs.view(bid, offset, res))
                    if last:
                        recycled.append(bid)
                    cbuf = ffi.from_buffer(data)
                    key = next(send_ids)
                    pending_sends[key] = cbuf
                    ring.prep_send(conn, cbuf, res, key, flags=socket.MSG_NOSIGNAL)
                    if not fl & CQE_F_MORE:
                        ring.prep_recv_select(conn, bufs.bgid, RECV, multishot=True)
                elif ud in pending_sends:
                    del pending_sends[ud]
            bufs.recycle(recycled)
        t.join()
        if conn >= 0:
            os.close(conn)
        print(
            f"io_uring echo: {messages} round trips in {result['seconds']:.3f}s "
            f"({messages / float(result['seconds']):.0f}/s), {ring.enter_calls} io_uring_enter calls, "
            f"bytes verified: {result['ok']}"
        )
        if not result["ok"]:
            raise SystemExit("echo returned different bytes")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=5000)
    serve(ap.parse_args().messages)
