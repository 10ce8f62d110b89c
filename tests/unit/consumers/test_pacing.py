from __future__ import annotations

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
