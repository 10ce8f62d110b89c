"""The demo's proof that the viewer's row is live and personal (ARCHITECTURE invariant 10): a
user's row through the gateway, compared with Latest; a like ("complete" event) posted through
the gateway; the time until Gorse has it (Kinesis -> events consumer) and until the row shows
Gorse's answer to it. Gorse computes the list per request (docker/gorse/config.toml
[recommend.ranker] type = "none"); item neighbours come from the master's loop (every minute)."""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from gorse_cdc.gorse import GorseClient
from gorse_cdc.settings import Settings

N = 5
REACT_WITHIN_S = 1.0


@dataclass
class LiveRow:
    user: str
    before: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""
    latest: list[str] = field(default_factory=list)
    latest_titles: list[str] = field(default_factory=list)
    liked: dict[str, Any] = field(default_factory=dict)
    after: list[dict[str, Any]] = field(default_factory=list)
    after_source: str = ""
    neighbours: set[str] = field(default_factory=set)
    waited_s: float = 0.0  # for Gorse's item neighbours (its loop) before the first row
    landed_s: float | None = None  # event accepted -> Gorse has the like
    reacted_s: float | None = None  # Gorse has the like -> the row is Gorse's answer to it

    @property
    def differs_from_latest(self) -> bool:
        return [i["id"] for i in self.before] != self.latest[: len(self.before)]

    @property
    def ok(self) -> bool:
        return (
            self.source == "personal"
            and self.differs_from_latest
            and self.reacted_s is not None
            and self.reacted_s <= REACT_WITHIN_S
        )

    def describe(self) -> list[str]:
        def titles(items: list[dict[str, Any]]) -> str:
            return "; ".join(f"{i['title']}" for i in items) or "(empty)"

        shaped = sum(1 for i in self.after if i["id"] in self.neighbours)
        before = {i["id"] for i in self.before}
        new = sum(1 for i in self.after if i["id"] not in before)
        lines = [
            f"user {self.user}'s row ({self.source}"
            + (f", after {self.waited_s:.0f} s for Gorse's item neighbours" if self.waited_s >= 1 else "")
            + f"): {titles(self.before)}",
            f"Latest: {'; '.join(self.latest_titles)}  -> the row "
            + ("differs from Latest" if self.differs_from_latest else "IS Latest"),
        ]
        if not self.liked:
            return [*lines, "no item to like: the row is empty"]
        lines.append(f"like: user {self.user} completes {self.liked['title']!r} (POST /v1/events)")
        if self.landed_s is None:
            return [*lines, "Gorse did not get the like within 30 s"]
        lines.append(f"Gorse had the like {self.landed_s:.2f} s after the event (Kinesis -> events consumer)")
        if self.reacted_s is None:
            return [*lines, f"the row did not show Gorse's answer within {REACT_WITHIN_S:g} s: FAILED"]
        verdict = "OK" if self.reacted_s <= REACT_WITHIN_S else "FAILED"
        lines += [
            f"row after ({self.after_source}), {self.reacted_s:.2f} s after Gorse had the like "
            f"(<= {REACT_WITHIN_S:g} s: {verdict}): {titles(self.after)}",
            f"{new} of its {len(self.after)} films are new in the row; {shaped} are neighbours of "
            f"{self.liked['title']!r}",
        ]
        return lines


def _unseen(items: list[str], seen: set[str]) -> list[str]:
    return [i for i in items if i not in seen][:N]


async def live_row(
    settings: Settings, base: str, reader: str, ingest: str, cafile: str, user: str, wait_s: float = 180.0
) -> LiveRow:
    out = LiveRow(user)
    context = ssl.create_default_context(cafile=cafile)
    async with aiohttp.ClientSession() as http, GorseClient.from_settings(settings) as gorse:

        async def get(path: str) -> dict[str, Any]:
            async with http.get(base + path, headers={"X-API-Key": reader}, ssl=context) as r:
                body: dict[str, Any] = await r.json()
                if r.status != 200:
                    raise SystemExit(f"gorse-cdc demo: the gateway answered {r.status}: {body}")
                return body

        # Gorse's first loop with the demo's data computes the item neighbours (every minute)
        started = time.monotonic()
        while True:
            row = await get(f"/v1/users/{user}/recommendations?n={N}")
            latest_items = (await get(f"/v1/latest?n={N + 50}"))["items"]
            latest = [i["id"] for i in latest_items]
            popular = [i["id"] for i in (await get(f"/v1/popular?n={N + 50}"))["items"]]
            ids = [i["id"] for i in row["items"]]
            seen = {f.item_id for f in await gorse.user_feedback(user)}
            latest, popular = _unseen(latest, seen), _unseen(popular, seen)
            if ids and ids not in (latest, popular):
                break
            if time.monotonic() - started > wait_s:
                break
            await asyncio.sleep(2)
        out.waited_s = time.monotonic() - started
        out.before, out.source, out.latest = row["items"], row["source"], latest
        out.latest_titles = [i["title"] for i in latest_items if i["id"] in latest]
        if not out.before:
            return out
        out.liked = out.before[0]
        item = out.liked["id"]
        out.neighbours = set(await gorse.item_neighbors(item, 20))
        event = {"events": [{"user": user, "item": item, "type": "complete"}]}
        posted = time.monotonic()
        async with http.post(
            base + "/v1/events", json=event, headers={"X-API-Key": ingest}, ssl=context
        ) as r:
            if r.status != 202:
                raise SystemExit(f"gorse-cdc demo: the gateway refused the like: {r.status} {await r.text()}")
        while item not in {f.item_id for f in await gorse.user_feedback(user)}:
            if time.monotonic() - posted > 30:
                return out
            await asyncio.sleep(0.05)
        landed = time.monotonic()
        out.landed_s = landed - posted
        while time.monotonic() - landed <= 3 * REACT_WITHIN_S:
            row = await get(f"/v1/users/{user}/recommendations?n={N}")
            answer = await gorse.recommend(user, N)  # Gorse's own list, now that it has the like
            if [i["id"] for i in row["items"]] == answer:
                out.reacted_s = time.monotonic() - landed
                out.after, out.after_source = row["items"], row["source"]
                break
            await asyncio.sleep(0.05)
    return out
