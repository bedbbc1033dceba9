"""A chat server on trio-uring: a nursery per client, every line broadcast to the others.

Each connection gets its own nursery with two tasks: one reads the client's lines and
broadcasts them, one writes what others said from the client's own queue, so a slow reader
never holds up the rest (its queue fills, and only its messages are dropped).

    python examples/chat_server.py [--port 8001]     serve until Ctrl-C (try: nc localhost 8001)
    python examples/chat_server.py --demo            serve on a free port, chat with 3 clients, exit
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
from functools import partial

import trio
import trio.testing

import trio_uring

QUEUE = 64  # lines a slow client may fall behind before it misses some


class ChatRoom:
    def __init__(self) -> None:
        self.members: dict[str, trio.MemorySendChannel[bytes]] = {}
        self.names = itertools.count(1)

    def broadcast(self, sender: str, line: bytes) -> None:
        for name, queue in self.members.items():
            if name != sender:
                # a member too slow to keep up misses the line; the others do not wait for it
                with contextlib.suppress(trio.WouldBlock):
                    queue.send_nowait(line)

    async def handle(self, stream: trio_uring.UringSocketStream) -> None:
        name = f"guest{next(self.names)}"
        send_queue, receive_queue = trio.open_memory_channel[bytes](QUEUE)
        self.members[name] = send_queue
        try:
            async with stream, trio.open_nursery() as nursery:
                nursery.start_soon(self.write_to, stream, receive_queue)
                await stream.send_all(f"welcome, {name}\n".encode())
                self.broadcast(name, f"* {name} joined\n".encode())
                await self.read_from(stream, name)
                nursery.cancel_scope.cancel()  # the client left: stop its writer too
        except trio.BrokenResourceError:
            pass
        finally:
            del self.members[name]
            self.broadcast(name, f"* {name} left\n".encode())

    async def read_from(self, stream: trio_uring.UringSocketStream, name: str) -> None:
        pending = b""
        async for data in stream:
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self.broadcast(name, f"{name}: ".encode() + line + b"\n")

    async def write_to(
        self, stream: trio_uring.UringSocketStream, queue: trio.MemoryReceiveChannel[bytes]
    ) -> None:
        async for line in queue:
            await stream.send_all(line)


async def read_lines(stream: trio_uring.UringSocketStream, count: int) -> list[str]:
    data = b""
    while data.count(b"\n") < count:
        chunk = await stream.receive_some()
        if not chunk:
            break
        data += chunk
    return data.decode().splitlines()


async def demo() -> None:
    room = ChatRoom()
    async with trio.open_nursery() as server:
        listeners = await server.start(partial(trio_uring.serve_tcp, host="127.0.0.1"), room.handle, 0)
        port = listeners[0].socket.getsockname()[1]
        clients = []
        for _ in range(3):
            client = await trio_uring.open_tcp_stream("127.0.0.1", port)
            clients.append(client)
            print("client", len(clients), "got:", (await read_lines(client, 1))[0])
        await trio.testing.wait_all_tasks_blocked()  # the demo waits for the joins to go out
        for i, client in enumerate(clients):
            await client.send_all(f"hello from client {i + 1}\n".encode())
            await trio.testing.wait_all_tasks_blocked()  # the demo waits for the joins to go out
        heard = await read_lines(clients[0], 4)  # two joins, then the two others' lines
        print("client 1 heard:", *heard, sep="\n  ")
        for client in clients:
            await client.aclose()
        server.cancel_scope.cancel()
    print(f"chat over {trio_uring.backend()}: {len(heard)} lines broadcast to client 1")


async def serve(port: int) -> None:
    print(f"chat server on port {port} ({trio_uring.backend()})")
    await trio_uring.serve_tcp(ChatRoom().handle, port)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=8001)
    ap.add_argument("--demo", action="store_true")
    args = ap.parse_args()
    trio_uring.run(demo) if args.demo else trio_uring.run(serve, args.port)
