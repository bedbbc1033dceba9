"""A hypercorn ASGI app served on trio-uring: hypercorn's own trio worker, io_uring sockets.

install_socket_factory() turns the sockets hypercorn binds itself (and every connection it
accepts) into io_uring sockets; the app is plain ASGI and knows nothing about it. For
hypercorn's command line and its worker processes, set TRIO_URING=1 instead:
``TRIO_URING=1 hypercorn --worker-class trio --workers 4 hypercorn_app:app``.

    pip install hypercorn
    python examples/hypercorn_app.py [--port 8003]   serve until Ctrl-C (try: curl localhost:8003)
    python examples/hypercorn_app.py --demo          serve on a free port, make 2 requests, exit
"""

from __future__ import annotations

import argparse
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

import trio_uring


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A plain ASGI app: answers every request with its path and the run's backend."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = f"{scope['path']} over {trio_uring.backend()}\n".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


def config(port: int) -> Config:
    cfg = Config()
    cfg.bind = [f"127.0.0.1:{port}"]
    cfg.accesslog = None
    return cfg


async def get(port: int, path: str) -> bytes:
    """One HTTP/1.0 request with the connection closed after it (enough for the demo)."""
    async with await trio_uring.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(f"GET {path} HTTP/1.0\r\nhost: localhost\r\n\r\n".encode())
        response = b""
        async for chunk in stream:
            response += chunk
    return response


async def demo() -> None:
    done = trio.Event()
    with trio_uring.install_socket_factory():  # hypercorn's listener and connections on io_uring
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                lambda task_status: serve(app, config(0), shutdown_trigger=done.wait, task_status=task_status)
            )
            port = int(binds[0].rsplit(":", 1)[1])
            print("io_uring sockets open while serving:", trio_uring.statistics().sockets_open)
            for path in ("/", "/io_uring"):
                head, _, body = (await get(port, path)).partition(b"\r\n\r\n")
                print(head.split(b"\r\n")[0].decode().strip(), "|", body.decode().strip())
            done.set()  # hypercorn's graceful shutdown
    print("served by hypercorn on", trio_uring.backend())


async def main(port: int) -> None:
    print(f"hypercorn on port {port} ({trio_uring.backend()})")
    with trio_uring.install_socket_factory():
        await serve(app, config(port))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8003)
    ap.add_argument("--demo", action="store_true")
    args = ap.parse_args()
    trio_uring.run(demo) if args.demo else trio_uring.run(main, args.port)
