"""Capped exponential backoff with full jitter. Pure apart from the random draw."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass
class Backoff:
    base_s: float = 0.1
    cap_s: float = 10.0
    attempt: int = 0

    def next_delay(self, hint_s: float | None = None) -> float:
        """The pause before the next try; a server's Retry-After (``hint_s``) is a floor."""
        ceiling = min(self.cap_s, self.base_s * (2**self.attempt))
        self.attempt += 1
        delay = random.uniform(ceiling / 2, ceiling)
        return max(delay, min(hint_s, self.cap_s)) if hint_s else delay

    def reset(self) -> None:
        self.attempt = 0
