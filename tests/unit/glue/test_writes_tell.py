"""The repair tells the owners of the users it wrote (glue.writes): after each write of users or
feedback, never before it, and never for items (no Spark, no Gorse: the order of calls only)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from glue.writes import GorseWriter


class Log:
    """A Gorse client and a teller that write their calls into one log, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def upsert_users(self, users: Any) -> None:
        self.calls.append(("upsert_users", sorted(u.user_id for u in users)))

    async def upsert_items(self, items: Any) -> None:
        self.calls.append(("upsert_items", sorted(i.item_id for i in items)))

    async def put_feedback(self, rows: Any) -> None:
        self.calls.append(("put_feedback", sorted(f.user_id for f in rows)))

    async def delete_feedback(self, user: str, item: str, ftype: str) -> None:
        self.calls.append(("delete_feedback", user))

    async def delete_user(self, user: str) -> None:
        self.calls.append(("delete_user", user))

    async def delete_item(self, item: str) -> None:
        self.calls.append(("delete_item", item))

    async def tell(self, users: Iterable[str]) -> None:
        self.calls.append(("tell", list(users)))


def fb(user: str, item: str) -> str:
    return orjson.dumps(
        {"FeedbackType": "like", "UserId": user, "ItemId": item, "Timestamp": "2026-01-01T00:00:00Z"}
    ).decode()


async def test_users_and_feedback_written_are_told_after_the_write() -> None:
    log = Log()
    w = GorseWriter(log, 4, log.tell)  # type: ignore[arg-type]
    await w.upsert("feedback", [fb("u2", "m1"), fb("u1", "m1"), fb("u2", "m2")])
    await w.upsert("users", [orjson.dumps({"UserId": "u3", "Labels": {}}).decode()])
    await w.upsert("items", [orjson.dumps({"ItemId": "m9", "Labels": {}}).decode()])
    await w.delete("feedback", [["like", "u4", "m1"]])
    await w.delete("users", [["u5"]])
    await w.delete("items", [["m8"]])
    assert log.calls == [
        ("put_feedback", ["u1", "u2", "u2"]),
        ("tell", ["u1", "u2"]),
        ("upsert_users", ["u3"]),
        ("tell", ["u3"]),
        ("upsert_items", ["m9"]),
        ("delete_feedback", "u4"),
        ("tell", ["u4"]),
        ("delete_user", "u5"),
        ("tell", ["u5"]),
        ("delete_item", "m8"),
    ]
    assert w.told == 5


async def test_without_a_teller_nothing_is_told() -> None:
    log = Log()
    await GorseWriter(log, 4).upsert("feedback", [fb("u1", "m1")])  # type: ignore[arg-type]
    assert [c for c, _ in log.calls] == ["put_feedback"]
