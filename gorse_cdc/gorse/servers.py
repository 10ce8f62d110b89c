"""Which Gorse server takes the next request: round-robin over several stateless servers
(a cluster's gorse-servers, or one load balancer), skipping for a while a server that could not
be reached. Pure: the clock is injected."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence


class ServerRing:
    """Round-robin over ``urls``. A server marked ``unreachable`` goes to the back of every
    order for ``cool_off_s`` (it is still tried when all are: a request is never refused here);
    ``reachable`` brings it back at once."""

    def __init__(
        self, urls: Sequence[str], cool_off_s: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not urls:
            raise ValueError("at least one Gorse server URL is needed")
        self.urls = list(dict.fromkeys(u.rstrip("/") for u in urls))
        self.cool_off_s = cool_off_s
        self._clock = clock
        self._next = 0
        self._down_until: dict[str, float] = {}

    def order(self) -> list[str]:
        """The servers to try for one request, in order: the next in rotation first, then the
        others; the ones cooling off last, the soonest back first."""
        n = len(self.urls)
        rotation = [self.urls[(self._next + i) % n] for i in range(n)]
        self._next = (self._next + 1) % n
        now = self._clock()
        up = [u for u in rotation if self._down_until.get(u, 0.0) <= now]
        down = sorted((u for u in rotation if u not in up), key=lambda u: self._down_until[u])
        return up + down

    def unreachable(self, url: str) -> bool:
        """Cool ``url`` off; True when it was not already failing (an outage's first failure:
        the one worth a warning; retries past each cool-off are not)."""
        first = url not in self._down_until
        self._down_until[url] = self._clock() + self.cool_off_s
        return first

    def reachable(self, url: str) -> bool:
        """True when ``url`` had been failing (it is back)."""
        return self._down_until.pop(url, None) is not None

    def is_down(self, url: str) -> bool:
        return self._down_until.get(url, 0.0) > self._clock()
