"""When to call GetRecords next. Pure.

Behind (MillisBehindLatest > 0 or a full batch): as fast as the per-shard limit allows
(5 calls/s -> 200 ms apart). Caught up: the pause doubles after each empty read, up to
the idle pause; any record resets it.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_INTERVAL_S = 0.2  # 5 GetRecords calls per second per shard


@dataclass
class PollPacer:
    idle_pause_s: float = 1.0
    min_interval_s: float = MIN_INTERVAL_S
    _pause_s: float = MIN_INTERVAL_S

    def next_pause(self, records: int, limit: int, millis_behind: int | None) -> float:
        """Seconds to wait between the start of this call and the start of the next."""
        if records >= limit or (millis_behind or 0) > 0:
            self._pause_s = self.min_interval_s
            return self.min_interval_s
        if records > 0:
            self._pause_s = self.min_interval_s
            return self.min_interval_s
        pause = self._pause_s
        self._pause_s = min(max(self.idle_pause_s, self.min_interval_s), self._pause_s * 2)
        return max(self.min_interval_s, min(pause, max(self.idle_pause_s, self.min_interval_s)))
