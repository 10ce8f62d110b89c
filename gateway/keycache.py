"""Looked-up API keys by id, trusted for ``ttl_s`` (the revocation lag). Pure: the clock is
injected.

Found keys and unknown ids are kept apart, each in its own bounded LRU: a flood of random,
well-formed keys fills and evicts only the unknown side, never a valid key; past ``max_found``
only the least recently used valid key is dropped (it is read again on its next request).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from gateway.keys import KeyRecord


class KeyCache:
    def __init__(
        self,
        ttl_s: float,
        *,
        max_found: int = 50_000,
        max_missing: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_found = max_found
        self.max_missing = max_missing
        self._clock = clock
        self._found: OrderedDict[str, tuple[float, KeyRecord]] = OrderedDict()
        self._missing: OrderedDict[str, float] = OrderedDict()

    def get(self, key_id: str) -> tuple[bool, KeyRecord | None]:
        """(held, record): record None when the id is known not to exist."""
        now = self._clock()
        found = self._found.get(key_id)
        if found is not None:
            if now - found[0] < self.ttl_s:
                self._found.move_to_end(key_id)
                return True, found[1]
            del self._found[key_id]
        missing = self._missing.get(key_id)
        if missing is not None:
            if now - missing < self.ttl_s:
                self._missing.move_to_end(key_id)
                return True, None
            del self._missing[key_id]
        return False, None

    def put(self, key_id: str, record: KeyRecord | None) -> None:
        if self.ttl_s <= 0:
            return
        now = self._clock()
        if record is None:
            self._found.pop(key_id, None)
            self._missing[key_id] = now
            self._missing.move_to_end(key_id)
            while len(self._missing) > self.max_missing:
                self._missing.popitem(last=False)
        else:
            self._missing.pop(key_id, None)
            self._found[key_id] = (now, record)
            self._found.move_to_end(key_id)
            while len(self._found) > self.max_found:
                self._found.popitem(last=False)

    def sizes(self) -> tuple[int, int]:
        """(found, missing) held now."""
        return len(self._found), len(self._missing)
