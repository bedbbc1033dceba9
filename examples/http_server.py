"""An HTTP/1.1 server on h11 and trio-uring: keep-alive, one task per connection.

h11 does the protocol (parsing, framing, keep-alive); trio-uring the I/O. Every response says
which backend served it.

    pip install h11
    python examples/http_server.py [--port 8002]     serve until Ctrl-C (try: curl localhost:8002/hi)
    python examples/http_server.py --demo            serve on a free port, make 3 requests, exit
"""

from __future__ import annotations

import argparse
from functools import partial

import h11
import trio

import trio_uring

MAX_RECV = 64 * 1024


async def next_event(conn: h11.Connection, stream: trio_uring.UringSocketStream) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await stream.receive_some(MAX_RECV))


async def handle(stream: trio_uring.UringSocketStream) -> None:
    conn = h11.Connection(h11.SERVER)
    async with stream:
        try:
            while True:
                event = await next_event(conn, stream)
                if isinstance(event, h11.ConnectionClosed):
                    return
                if isinstance(event, h11.Request):
                    body = f"{event.method.decode()} {event.target.decode()} over {trio_uring.backend()}\n"
                    await respond(conn, stream, 200, body.encode())
                elif isinstance(event, h11.EndOfMessage):
                    if conn.our_state is h11.MUST_CLOSE:
                        return
                    conn.start_next_cycle()  # keep-alive: the next request on this connection
        except h11.RemoteProtocolError as exc:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await respond(conn, stream, exc.error_status_hint, f"{exc}\n".encode())
        except trio.BrokenResourceError:
            pass


async def respond(
    conn: h11.Connection, stream: trio_uring.UringSocketStream, status: int, body: bytes
) -> None:
    headers = [("content-type", "text/plain"), ("content-length", str(len(body)))]
    data = conn.send(h11.Response(status_code=status, headers=headers))
    data += conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage())
    await stream.send_all(data)


async def demo() -> None:
    async with trio.open_nursery() as server:
        listeners = await server.start(partial(trio_uring.serve_tcp, host="127.0.0.1"), handle, 0)
        port = listeners[0].socket.getsockname()[1]
        client = h11.Connection(h11.CLIENT)
        async with await trio_uring.open_tcp_stream("127.0.0.1", port) as stream:
            for path in ("/", "/hello", "/bye"):  # three requests on one connection
                request = h11.Request(method="GET", target=path, headers=[("host", "localhost")])
                await stream.send_all(client.send(request) + client.send(h11.EndOfMessage()))
                response = await next_event(client, stream)
                assert isinstance(response, h11.Response)
                body = b""
                while not isinstance(event := await next_event(client, stream), h11.EndOfMessage):
                    assert isinstance(event, h11.Data)
                    body += event.data
                print(response.status_code, body.decode().strip())
                client.start_next_cycle()
        server.cancel_scope.cancel()


async def serve(port: int) -> None:
    print(f"HTTP/1.1 server on port {port} ({trio_uring.backend()})")
    await trio_uring.serve_tcp(handle, port)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8002)
    ap.add_argument("--demo", action="store_true")
    args = ap.parse_args()
    trio_uring.run(demo) if args.demo else trio_uring.run(serve, args.port)
