"""The demo OTT home screen, served by the gateway, in a real headless Chromium: the user's
rows load through the API, a play button posts an event, and the row changes."""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

from entrypoints.stack.install import ensure_chromium
from gorse_cdc.gorse import GorseClient
from gorse_cdc.gorse.models import Feedback, Item
from gorse_cdc.settings import Settings
from tests.integration.gateway.browser import chromium
from tests.integration.gateway.conftest import Gateway

GENRES = ["Action", "Comedy", "Drama", "Sci-Fi", "Thriller"]


async def test_play_on_the_home_screen_changes_the_row(
    gateway: Gateway, settings: Settings, tmp_path: Path
) -> None:
    binary = ensure_chromium()
    user = f"web-{random.randrange(10**6)}"
    async with GorseClient.from_settings(settings) as g:
        items = [
            Item(f"web{i}", {"genres": random.sample(GENRES, 2)}, (GENRES[i % 5],), None, f"Demo Movie {i}")
            for i in range(40)
        ]
        await g.upsert_items(items)
        await g.put_feedback([Feedback("like", f"web-other-{u}", f"web{(u * 7) % 40}", 5) for u in range(20)])
    url = f"{gateway.url}/?user={user}#key={gateway.keys['admin']['key']}"
    async with chromium(binary, url) as page:
        await page.wait_for("document.querySelectorAll('#personal .card').length >= 3")
        first = await page.eval("document.querySelector('#personal .card').dataset.item")
        titles = await page.eval(
            "[...document.querySelectorAll('#personal .card b')].map(b => b.textContent)"
        )
        assert all(t for t in titles)  # enriched: titles, not bare ids
        await page.eval("document.querySelector('#personal .card button').click()")
        await page.wait_for(f"document.getElementById('status').textContent.includes('played {first}')", 10)
        await page.wait_for(
            f"![...document.querySelectorAll('#personal .card')].some(c => c.dataset.item === '{first}')", 5
        )
        shot = tmp_path / "gateway-demo.png"
        await page.screenshot(shot)
    assert shot.stat().st_size > 10_000
    if target := os.environ.get("GORSE_CDC_GATEWAY_SCREENSHOT"):
        shutil.copy(shot, target)
