"""A lossy TCP proxy on 127.0.0.1 in front of one upstream port (asyncio streams).

Per connection it may reset the client at once, or hold it for a while before
connecting upstream; per chunk the upstream answers, it may drop the connection
instead of passing the answer on. The last is the fault that matters to an
idempotent API: the request was served, the client never hears of it and must
retry with the same key. Every fault is bounded (delays, open connections).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class Faults:
    """Probabilities of each fault; delays in seconds."""

    reset: float = 0.03  # close the client's connection with an RST before anything
    delay: float = 0.05  # hold the connection up to ``max_delay_s`` first
    max_delay_s: float = 1.0
    drop_response: float = 0.03  # per upstream chunk: drop it and both connections


class LossyProxy:
    def __init__(self, upstream_port: int, faults: Faults, seed: int, max_connections: int = 512):
        self.upstream_port = upstream_port
        self.faults = faults
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self._slots = asyncio.Semaphore(max_connections)
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async with self._slots:
            self.counts["connections"] += 1
            try:
                await self._proxy(reader, writer)
            finally:
                writer.close()

    async def _proxy(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        f = self.faults
        if self.rng.random() < f.reset:
            self.counts["reset"] += 1
            _reset(writer)
            return
        if self.rng.random() < f.delay:
            self.counts["delayed"] += 1
            await asyncio.sleep(self.rng.uniform(0, f.max_delay_s))
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.upstream_port), 5
            )
        except (TimeoutError, OSError):
            self.counts["upstream_down"] += 1
            _reset(writer)
            return
        try:
            to_up = asyncio.create_task(_pipe(reader, up_writer, None))
            to_client = asyncio.create_task(_pipe(up_reader, writer, self._drop))
            _, pending = await asyncio.wait({to_up, to_client}, return_when="FIRST_COMPLETED")
            if to_client.done() and to_client.result() == "dropped":
                _reset(writer)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        finally:
            up_writer.close()

    def _drop(self) -> bool:
        if self.rng.random() < self.faults.drop_response:
            self.counts["response_dropped"] += 1
            return True
        return False


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, drop) -> str:
    try:
        while data := await src.read(65536):
            if drop is not None and drop():
                return "dropped"
            dst.write(data)
            await dst.drain()
    except (OSError, asyncio.IncompleteReadError):
        return "error"
    return "eof"


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0), not a FIN: the client sees a connection reset."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
