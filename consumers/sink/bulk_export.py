"""One of Gorse's master exports (users, items, feedback: JSONL, streamed) read instead of a GET
per key, when that is cheaper: at least ``at`` keys are wanted and the last export held at most
``rows_per_key`` rows per wanted key (a full load into a Gorse still small for it). A failure
(a master that refuses the export) is logged once and the export is not tried again: the
callers' GETs stay exact. Used by the remembered feedback (consumers.sink.liked) and the item
cache (consumers.sink.item_cache)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import orjson

from gorse_cdc.errors import GorseRequestError
from gorse_cdc.gorse import GorseClient

log = logging.getLogger(__name__)


class BulkExport:
    def __init__(self, client: GorseClient, what: str, *, at: int = 200, rows_per_key: int = 25) -> None:
        self._client = client
        self.what = what
        self.at = at
        self.rows_per_key = rows_per_key
        self._rows: float | None = None  # rows in the last export (None: not tried)
        self.reads = 0

    def worth(self, keys: int) -> bool:
        """Is one export cheaper than ``keys`` GETs (as far as the last export tells)?"""
        if keys < self.at:
            return False
        return self._rows is None or self._rows <= self.rows_per_key * keys

    def seen(self, rows: float) -> None:
        """As if the last export had held ``rows`` rows (tests)."""
        self._rows = rows

    async def read(self, row: Callable[[dict[str, Any]], None]) -> bool:
        """Stream the export, each row (parsed) to ``row``; False when it failed."""
        rows = 0
        try:
            async for line in self._client.export_lines(self.what):
                rows += 1
                row(orjson.loads(line))
        except GorseRequestError as e:
            self._rows = float("inf")
            log.warning("reading %s from Gorse's export failed; a GET per key from now: %s", self.what, e)
            return False
        self._rows = rows
        self.reads += 1
        return True
