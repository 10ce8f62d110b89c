from __future__ import annotations

from consumers.backoff import Backoff
from consumers.kinesis.pacing import PollPacer


def test_behind_or_full_reads_at_the_shard_limit() -> None:
    p = PollPacer(idle_pause_s=2.0)
    assert p.next_pause(100, 100, 0) == 0.2
    assert p.next_pause(3, 100, 5000) == 0.2


def test_idle_pause_doubles_up_to_the_idle_pause_and_resets() -> None:
    p = PollPacer(idle_pause_s=1.0)
    pauses = [p.next_pause(0, 100, 0) for _ in range(6)]
    assert pauses[0] == 0.2 and pauses[1] == 0.4 and pauses[2] == 0.8
    assert max(pauses) == 1.0 and pauses[-1] == 1.0
    assert p.next_pause(1, 100, 0) == 0.2
    assert p.next_pause(0, 100, 0) == 0.2


def test_backoff_is_capped_and_honours_retry_after() -> None:
    b = Backoff(base_s=0.1, cap_s=1.0)
    delays = [b.next_delay() for _ in range(10)]
    assert all(0 < d <= 1.0 for d in delays)
    assert delays[-1] >= 0.5
    b.reset()
    assert b.next_delay(hint_s=0.9) >= 0.9
