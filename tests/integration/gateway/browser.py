"""A real headless Chromium (the Debian package) driven over the DevTools protocol with
aiohttp's websocket client: navigate, evaluate JavaScript, take screenshots."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from tests.integration.gateway.conftest import free_port


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._ids = itertools.count(1)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        cid = next(self._ids)
        await self.ws.send_json({"id": cid, "method": method, "params": params})
        while True:
            msg = await asyncio.wait_for(self.ws.receive_json(), 30)
            if msg.get("id") == cid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return dict(msg.get("result", {}))

    async def eval(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"JavaScript error: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout_s: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = await self.eval(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                state = await self.eval(  # never the fragment: it may carry a key
                    "location.origin + location.pathname + location.search + ' | '"
                    " + document.body.innerText.slice(0, 300)"
                )
                raise AssertionError(f"not true after {timeout_s} s: {expression}; page: {state}")
            await asyncio.sleep(0.1)

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))  # noqa: ASYNC240 (a test helper)


@contextlib.asynccontextmanager
async def chromium(binary: str, url: str) -> AsyncIterator[Page]:
    port = free_port()
    profile = Path(tempfile.mkdtemp(prefix="gorse-cdc-chromium-"))
    argv = [
        binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
        f"--remote-debugging-port={port}", "--remote-debugging-address=127.0.0.1",
        f"--user-data-dir={profile}", "--window-size=1280,800",
        "--ignore-certificate-errors",  # the stack's own CA is not in Chromium's NSS store
        "about:blank",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: ASYNC220
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    async with http.put(f"http://127.0.0.1:{port}/json/new?about:blank") as r:
                        target = await r.json(content_type=None)
                        break
                except aiohttp.ClientError:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = Page(ws)
                await page.send("Page.enable")
                await page.send("Runtime.enable")
                await page.send("Page.navigate", url=url)
                yield page
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)
