"""A fault-injecting TCP proxy for the real stack's servers (moto's DynamoDB, Gorse, Kinesis):
it forwards bytes both ways and, while ``hold`` is on, keeps every request it receives without
forwarding it (the server seems hung: connections open, no answer). It counts the requests held
and those the client gave up on while held (closed its connection: a cancelled call)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit


class HangingProxy:
    def __init__(self, upstream_url: str) -> None:
        u = urlsplit(upstream_url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.url = ""
        self.held = 0  # requests that arrived (or were waiting) while holding
        self.abandoned = 0  # held requests whose client closed the connection
        self.abandoned_at: list[float] = []  # loop time of each
        self._answer = asyncio.Event()
        self._answer.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def hold(self) -> bool:
        return not self._answer.is_set()

    @hold.setter
    def hold(self, on: bool) -> None:
        if on:
            self._answer.clear()
        else:
            self._answer.set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self.hold = False
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            ureader, uwriter = await asyncio.open_connection(self.host, self.port)
        except OSError:
            cwriter.close()
            self._tasks.discard(task)
            return
        down = asyncio.create_task(self._pipe(ureader, cwriter))
        try:
            await self._up(creader, uwriter)
        finally:
            down.cancel()
            for w in (uwriter, cwriter):
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()
            self._tasks.discard(task)

    async def _up(self, creader: asyncio.StreamReader, uwriter: asyncio.StreamWriter) -> None:
        while data := await creader.read(65536):
            if self.hold:
                self.held += 1
                while self.hold:  # wait for an answer, watching for the client to give up
                    more = asyncio.ensure_future(creader.read(65536))
                    answer = asyncio.ensure_future(self._answer.wait())
                    done, _ = await asyncio.wait({more, answer}, return_when=asyncio.FIRST_COMPLETED)
                    answer.cancel()
                    if more not in done:
                        more.cancel()
                        break
                    chunk = more.result()
                    if not chunk:
                        self.abandoned += 1
                        self.abandoned_at.append(asyncio.get_running_loop().time())
                        return
                    data += chunk
            uwriter.write(data)
            await uwriter.drain()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        with contextlib.suppress(Exception):
            writer.close()


@contextlib.asynccontextmanager
async def hanging_proxy(upstream_url: str) -> AsyncIterator[HangingProxy]:
    p = HangingProxy(upstream_url)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()
