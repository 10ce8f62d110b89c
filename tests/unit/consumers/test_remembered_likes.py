"""Remembered likes (consumers.sink.liked): a worker's users' liked items are read from Gorse
once, then kept current from the plans it writes. Random plans against a fake Gorse that keeps
its feedback: the labels written always equal those computed from the fake's truth, with far
fewer reads of users' likes. Logic only (the real Gorse: the consumer integration tests)."""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from consumers.coalesce import WritePlan
from consumers.sink.gorse_sink import GorseSink
from consumers.wiring import build_mapper
from gorse_cdc.gorse.models import Feedback, Item, User
from gorse_cdc.settings import Settings
from tests.unit.consumers.test_gorse_sink_phases import RecordingGorse

GENRES = ["Action", "Comedy", "Drama", "Horror", "Sci-Fi"]


class StoringGorse(RecordingGorse):
    """Keeps feedback as Gorse does: keyed by (type, user, item)."""

    def __init__(self) -> None:
        super().__init__()
        self.feedback: set[tuple[str, str, str]] = set()
        self.like_reads = 0  # reads of a user's likes, or of all their feedback
        self.empty_deletes = 0  # typed deletes of feedback Gorse did not hold

    async def put_feedback(self, rows: Any) -> None:
        for f in rows:
            self.feedback.add((f.feedback_type, f.user_id, f.item_id))

    async def delete_feedback(self, user_id: str, item_id: str, ftype: str | None = None) -> None:
        if ftype is not None and (ftype, user_id, item_id) not in self.feedback:
            self.empty_deletes += 1
        self.feedback = {
            k for k in self.feedback if not (k[1:] == (user_id, item_id) and ftype in (None, k[0]))
        }

    async def delete_item(self, item_id: str) -> None:
        self.items.pop(item_id, None)
        self.feedback = {k for k in self.feedback if k[2] != item_id}

    async def user_feedback(self, user_id: str, ftype: str | None = None) -> list[Feedback]:
        if ftype in (None, "like"):
            self.like_reads += 1
        return [Feedback(t, u, i) for t, u, i in self.feedback if u == user_id and ftype in (None, t)]

    async def item_feedback(self, item_id: str, ftype: str | None = None) -> list[Feedback]:
        return [Feedback(t, u, i) for t, u, i in self.feedback if i == item_id and ftype in (None, t)]

    async def upsert_users(self, users: Any) -> None:
        for u in users:
            self.written_users[u.user_id] = u
            self.users[u.user_id] = u


def rate(plan: WritePlan, user: str, item: str, ftype: str) -> None:
    """A rating of ``ftype`` in the plan as the mapper writes it: the row, a stale delete of the
    other type (any update may cross the threshold), the user's labels to recompute."""
    plan.put_feedback[(user, item)] = Feedback(ftype, user, item, 5.0 if ftype == "like" else 2.0)
    plan.stale_feedback.append(("unlike" if ftype == "like" else "like", user, item))
    plan.liked_users.add(user)


def one_plan(rng: random.Random, g: StoringGorse, users: list[str], items: list[str]) -> WritePlan:
    plan = WritePlan()
    for _ in range(rng.randint(1, 12)):
        u, i = rng.choice(users), rng.choice(items)
        if (u, i) in plan.put_feedback or (u, i) in plan.delete_feedback:
            continue
        kind = rng.random()
        if kind < 0.75:
            rate(plan, u, i, "like" if rng.random() < 0.6 else "unlike")
        else:
            plan.delete_feedback.append((u, i))
        plan.liked_users.add(u)
    back = [i for i in items if i not in g.items and i not in {k[1] for k in plan.put_feedback}]
    if back and rng.random() < 0.3:  # a deleted movie re-created with the same id, no likes
        i = rng.choice(back)
        plan.upsert_items[i] = Item(i, {"genres": rng.sample(GENRES, 2)}, comment=f"Movie {i}")
    if rng.random() < 0.05:
        gone = rng.choice(items)
        if gone in g.items:
            plan.delete_items.append(gone)
            plan.put_feedback = {k: v for k, v in plan.put_feedback.items() if k[1] != gone}
            plan.stale_feedback = [k for k in plan.stale_feedback if k[2] != gone]
            plan.delete_feedback = [k for k in plan.delete_feedback if k[1] != gone]
    return plan


@pytest.mark.parametrize("seed", range(5))
async def test_labels_from_remembered_likes_always_equal_gorses_truth(seed: int) -> None:
    rng = random.Random(seed)
    g = StoringGorse()
    mapper = build_mapper(Settings())
    items = [f"m{n}" for n in range(30)]
    users = [f"u{n}" for n in range(8)]
    for i in items:
        g.items[i] = Item(i, {"genres": rng.sample(GENRES, 2)}, comment=f"Movie {i}")
    for u in users:
        g.users[u] = User(u, {"age": 30})
    sink = GorseSink(g, mapper, concurrency=4, remember_likes=True)  # type: ignore[arg-type]
    writes = 0
    for _ in range(150):
        plan = one_plan(rng, g, users, items)
        await sink.write(plan)
        for u in plan.liked_users:
            liked = {i for t, uu, i in g.feedback if uu == u and t == "like" and i in g.items}
            labels = sorted({v for i in liked for v in mapper.item_label_values(g.items[i].labels)})
            expected = mapper.with_liked(g.users[u], labels)
            assert g.written_users[u].labels == expected.labels, (u, liked)
            writes += 1
        pairs = [(u, i) for _, u, i in g.feedback]
        assert len(pairs) == len(set(pairs)), "a pair holds both types: a stale delete was skipped"
    # once per user, plus the likers of deleted items, refreshed as other workers' users; the
    # old path read once per user per plan (~900 here)
    assert g.like_reads <= 3 * len(users)
    assert writes > 10 * len(users)
    assert sink.liked.likes_remembered > sink.liked.likes_read
    # stale types are deleted only when held: a delete of nothing is a wasted call
    assert g.empty_deletes == 0


async def test_remembered_feedback_spares_the_delete_of_a_type_not_held() -> None:
    """A re-rate that does not cross 4 sends no DELETE (the memory says the other type is not
    held); one that crosses deletes the old type. Without remembering: one DELETE per re-rate."""
    for remember in (True, False):
        g = StoringGorse()
        g.items["m1"] = Item("m1", {"genres": ["Drama"]}, comment="M")
        g.users["u1"] = User("u1", {"age": 30})
        sink = GorseSink(g, build_mapper(Settings()), concurrency=4, remember_likes=remember)  # type: ignore[arg-type]

        def rate(t: str) -> WritePlan:
            other = "unlike" if t == "like" else "like"
            return WritePlan(
                put_feedback={("u1", "m1"): Feedback(t, "u1", "m1", 5.0)},
                stale_feedback=[(other, "u1", "m1")],
                liked_users={"u1"},
            )

        for t in ("like", "like", "like", "unlike"):
            await sink.write(rate(t))
        assert g.feedback == {("unlike", "u1", "m1")}
        assert g.empty_deletes == (0 if remember else 3), remember


async def test_a_type_hidden_by_a_future_timestamp_is_still_deleted() -> None:
    """Gorse hides feedback timestamped later than now from reads: a user written such a row is
    not trusted to the memory (made of reads) until that time, so the stale delete is sent."""
    from datetime import UTC, datetime, timedelta

    g = StoringGorse()
    g.items["m1"] = Item("m1", {"genres": ["Drama"]}, comment="M")
    g.users["u1"] = User("u1", {"age": 30})
    later = datetime.now(UTC) + timedelta(minutes=5)
    hidden: set[tuple[str, str, str]] = set()

    async def user_feedback(user_id: str, ftype: str | None = None) -> list[Feedback]:
        return [Feedback(t, u, i) for t, u, i in g.feedback - hidden if u == user_id and ftype in (None, t)]

    g.user_feedback = user_feedback  # type: ignore[method-assign]
    sink = GorseSink(g, build_mapper(Settings()), concurrency=4, remember_likes=True)  # type: ignore[arg-type]
    hidden.add(("unlike", "u1", "m1"))
    await sink.write(
        WritePlan(
            put_feedback={("u1", "m1"): Feedback("unlike", "u1", "m1", 2.0, later)},
            stale_feedback=[("like", "u1", "m1")],
            liked_users={"u1"},
        )
    )
    await sink.write(  # the re-rate, a moment later (before the timestamp)
        WritePlan(
            put_feedback={("u1", "m1"): Feedback("like", "u1", "m1", 5.0)},
            stale_feedback=[("unlike", "u1", "m1")],
            liked_users={"u1"},
        )
    )
    assert g.feedback == {("like", "u1", "m1")}


async def test_a_worker_that_takes_new_shards_reads_likes_again() -> None:
    g = StoringGorse()
    g.items["m1"] = Item("m1", {"genres": ["Drama"]}, comment="M")
    g.users["u1"] = User("u1", {"age": 30})
    sink = GorseSink(g, build_mapper(Settings()), concurrency=4, remember_likes=True)  # type: ignore[arg-type]
    plan = WritePlan(put_feedback={("u1", "m1"): Feedback("like", "u1", "m1", 5.0)}, liked_users={"u1"})
    await sink.write(plan)
    g.feedback.clear()  # another writer (the shard's previous owner, a replay) changed Gorse
    sink.shards_taken()
    await sink.write(WritePlan(liked_users={"u1"}))
    assert g.like_reads == 2  # once before, once after
    assert "Drama" not in str(g.written_users["u1"].labels)


async def test_off_by_default_every_computation_reads_the_users_likes() -> None:
    g = StoringGorse()
    g.items["m1"] = Item("m1", {"genres": ["Drama"]}, comment="M")
    g.users["u1"] = User("u1", {"age": 30})
    sink = GorseSink(g, build_mapper(Settings()), concurrency=4)  # type: ignore[arg-type]
    for _ in range(3):
        await sink.write(
            WritePlan(put_feedback={("u1", "m1"): Feedback("like", "u1", "m1", 5.0)}, liked_users={"u1"})
        )
    assert g.like_reads == 3


async def test_a_reread_record_makes_the_owner_read_a_repaired_user_again() -> None:
    """The reconcile repairs a like behind the owner's back and tells it (a reread refresh
    record on the user's shard): the next labels include the repaired like. Without the record
    the owner's memory misses it and writes labels that stay wrong."""
    from consumers.coalesce import coalesce
    from gorse_cdc.refresh_records import decode_refresh, encode_refresh

    def world() -> tuple[StoringGorse, GorseSink]:
        g = StoringGorse()
        g.items["m1"] = Item("m1", {"genres": ["Drama"]}, comment="M1")
        g.items["m2"] = Item("m2", {"genres": ["Horror"]}, comment="M2")
        g.items["m3"] = Item("m3", {"genres": ["Comedy"]}, comment="M3")
        g.users["u1"] = User("u1", {"age": 30})
        return g, GorseSink(g, build_mapper(Settings()), concurrency=4, remember_likes=True)  # type: ignore[arg-type]

    def like(item: str) -> WritePlan:
        return WritePlan(put_feedback={("u1", item): Feedback("like", "u1", item, 5.0)}, liked_users={"u1"})

    told = decode_refresh(encode_refresh("u1", {}, reread=True))
    assert told is not None and getattr(told, "reread", False)
    for tell in (False, True):
        g, sink = world()
        await sink.write(like("m1"))
        g.feedback.add(("like", "u1", "m2"))  # the reconcile's repair
        plan = like("m3")
        if tell:
            told_plan = coalesce([told])  # type: ignore[list-item]
            assert told_plan.reread_users == {"u1"} and "u1" in told_plan.liked_users
            await sink.write(told_plan)
        await sink.write(plan)
        labels = str(g.written_users["u1"].labels)
        assert ("Horror" in labels) is tell, (tell, labels)


async def test_a_writer_beside_the_live_consumer_tells_every_user_it_wrote_after_writing() -> None:
    """An archive replay or re-drive run --beside-live holds no lease: after each plan it tells
    the owners of every user whose row or feedback it wrote (reread records)."""
    g = StoringGorse()
    g.items["m1"] = Item("m1", {"genres": ["Drama"]}, comment="M")
    for u in ("u1", "u2", "u3", "u4"):
        g.users[u] = User(u, {"age": 30})
    told: list[tuple[list[str], set[tuple[str, str, str]]]] = []

    async def tell(users: Any) -> None:
        told.append((sorted(users), set(g.feedback)))  # what Gorse held when told

    sink = GorseSink(g, build_mapper(Settings()), concurrency=4, tell_owners=tell)  # type: ignore[arg-type]
    g.feedback.add(("like", "u2", "m1"))
    plan = WritePlan(
        put_feedback={("u1", "m1"): Feedback("like", "u1", "m1", 5.0)},
        delete_feedback=[("u2", "m1")],
        upsert_users={"u3": User("u3", {"age": 31})},
        liked_users={"u1", "u2", "u3"},
    )
    await sink.write(plan)
    assert told == [(["u1", "u2", "u3"], {("like", "u1", "m1")})]


class ExportingGorse(StoringGorse):
    """Also serves the master's feedback export (JSONL lines), counting reads."""

    def __init__(self) -> None:
        super().__init__()
        self.exports = 0

    async def export_lines(self, what: str) -> Any:
        assert what == "feedback"
        self.exports += 1
        for t, u, i in sorted(self.feedback):
            yield orjson.dumps({"FeedbackType": t, "UserId": u, "ItemId": i})


def load_plan(g: StoringGorse, users: list[str], rng: random.Random) -> WritePlan:
    """A full load's plan: LOAD rows of every user, a few ratings each (stale keys: any type)."""
    plan = WritePlan(upsert_users={u: User(u, {"age": 30}) for u in users}, liked_users=set(users))
    for u in users:
        for i in rng.sample(sorted(g.items), 3):
            rate(plan, u, i, "like" if rng.random() < 0.6 else "unlike")
    return plan


@pytest.mark.parametrize("gorse_rows", [0, 100_000])
async def test_a_full_load_reads_many_users_from_one_export_while_gorse_is_small(gorse_rows: int) -> None:
    """A plan with hundreds of users new to the worker reads them from one export of Gorse's
    feedback instead of a GET each, when Gorse is small for it; labels and stale deletes stay
    exact (some users already hold the other type). A big Gorse: a GET per user, as before."""
    rng = random.Random(3)
    g = ExportingGorse()
    for n in range(40):
        g.items[f"m{n}"] = Item(f"m{n}", {"genres": rng.sample(GENRES, 2)}, comment="M")
    users = [f"u{n}" for n in range(300)]
    for u in users[:50]:  # a reload: Gorse already holds some of their feedback
        g.feedback |= {("unlike", u, f"m{n}") for n in range(40)}
    for n in range(gorse_rows):  # other users' feedback: the export's size
        g.feedback.add(("like", f"other{n}", "m0"))
    g.users.update({u: User(u, {"age": 30}) for u in users})
    sink = GorseSink(g, build_mapper(Settings()), concurrency=8, remember_likes=True)  # type: ignore[arg-type]
    sink.liked._export.seen(gorse_rows)  # as if the last export had read that many
    plan = load_plan(g, users, rng)
    await sink.write(plan)
    for u in users:
        liked = {i for t, uu, i in g.feedback if uu == u and t == "like"}
        labels = sorted({v for i in liked for v in sink.mapper.item_label_values(g.items[i].labels)})
        assert g.written_users[u].labels == sink.mapper.with_liked(g.users[u], labels).labels, u
    pairs = [(u, i) for _, u, i in g.feedback]
    assert len(pairs) == len(set(pairs))
    if gorse_rows == 0:
        assert (g.exports, g.like_reads) == (1, 0)
    else:
        assert (g.exports, g.like_reads) == (0, len(users))


async def test_users_evicted_while_holding_nothing_are_not_read_again() -> None:
    """A full load writes every user's row before their ratings: users evicted from the bounded
    memory while they held nothing are kept as ids, so their ratings read nothing; a user who
    held something is read again. Stale deletes and labels stay exact."""
    g = StoringGorse()
    for n in range(10):
        g.items[f"m{n}"] = Item(f"m{n}", {"genres": [GENRES[n % 5]]}, comment="M")
    users = [f"u{n:02}" for n in range(60)]
    g.users.update({u: User(u, {"age": 30}) for u in users})
    g.feedback |= {("like", u, "m1") for u in users[:5]}  # a reload: these hold a like already
    sink = GorseSink(g, build_mapper(Settings()), concurrency=4, remember_likes=True)  # type: ignore[arg-type]
    sink.liked._likes_max = 10
    await sink.write(WritePlan(upsert_users={u: User(u, {"age": 30}) for u in users}, liked_users=set(users)))
    assert g.like_reads == 60
    for chunk in range(0, 60, 10):
        plan = WritePlan()
        for u in users[chunk : chunk + 10]:
            rate(plan, u, "m1", "unlike")
        await sink.write(plan)
    assert g.feedback == {("unlike", u, "m1") for u in users}  # the old likes deleted
    # the 5 who held something fit the memory (10 users); the 55 who held nothing never
    # took a place in it (ids only), so none is read again
    assert g.like_reads == 60, "users known to hold nothing are not read again"
    mapper = sink.mapper
    assert all(g.written_users[u].labels == mapper.with_liked(g.users[u], []).labels for u in users)
    sink.liked.forget()
    await sink.write(WritePlan(liked_users={"u30"}))
    assert g.like_reads == 61  # forgetting drops what was known empty too


class IndexedGorse(StoringGorse):
    """The same answers in constant time a call (12k users; the test rates only m1)."""

    async def delete_feedback(self, user_id: str, item_id: str, ftype: str | None = None) -> None:
        keys = {(t, user_id, item_id) for t in (("like", "unlike") if ftype is None else (ftype,))}
        if ftype is not None and not keys & self.feedback:
            self.empty_deletes += 1
        self.feedback -= keys

    async def user_feedback(self, user_id: str, ftype: str | None = None) -> list[Feedback]:
        self.like_reads += 1
        return [
            Feedback(t, user_id, i)
            for t in ("like", "unlike")
            for i in ("m1",)
            if (t, user_id, i) in self.feedback
        ]


async def test_a_stream_that_keeps_adding_users_reads_each_once() -> None:
    """The activity adds a user in 8 % of its changes: a 5-minute run grew 943 users to ~25k,
    and a 10k-user memory then read a user again at most of their changes. The memory is
    bounded by feedback rows (ids shared), so 12k users with a few rows each stay remembered."""
    g = IndexedGorse()
    g.items.update({f"m{n}": Item(f"m{n}", {"genres": [GENRES[n % 5]]}, comment="M") for n in range(5)})
    sink = GorseSink(g, build_mapper(Settings()), concurrency=8, remember_likes=True)  # type: ignore[arg-type]
    users = [f"new{n:05}" for n in range(12_000)]
    for start in range(0, len(users), 150):  # the new users' rows (each read once: nothing)
        chunk = users[start : start + 150]
        await sink.write(
            WritePlan(upsert_users={u: User(u, {"age": 20}) for u in chunk}, liked_users=set(chunk))
        )
    for start in range(0, len(users), 150):  # then a like each
        plan = WritePlan()
        for u in users[start : start + 150]:
            rate(plan, u, "m1", "like")
        await sink.write(plan)
    assert g.like_reads == len(users)  # each new user read once, at their row
    for start in range(0, len(users), 150):  # every user re-rates: a crossing, like -> unlike
        plan = WritePlan()
        for u in users[start : start + 150]:
            rate(plan, u, "m1", "unlike")
        await sink.write(plan)
    assert g.like_reads == len(users), "remembered users were read again"
    assert g.feedback == {("unlike", u, "m1") for u in users} and g.empty_deletes == 0


async def test_the_memory_is_bounded_by_feedback_rows_and_stays_exact() -> None:
    """Past ``likes_rows`` rows the least recently used users are forgotten (read again when
    next written); the count of rows stays within the bound and the labels stay exact."""
    g = StoringGorse()
    items = [f"m{n}" for n in range(10)]
    g.items.update({i: Item(i, {"genres": [GENRES[n % 5]]}, comment="M") for n, i in enumerate(items)})
    users = [f"u{n}" for n in range(8)]
    g.users.update({u: User(u, {"age": 30}) for u in users})
    g.feedback |= {("like", u, i) for u in users for i in items}  # 10 rows each, 80 in all
    sink = GorseSink(g, build_mapper(Settings()), concurrency=1, remember_likes=True)  # type: ignore[arg-type]
    sink.liked._rows_max = 35
    for u in users:
        await sink.write(WritePlan(liked_users={u}))
    assert g.like_reads == 8
    assert sink.liked._rows <= 35 and len(sink.liked._held) == 3  # u5, u6, u7
    plan = WritePlan()
    for u in ("u0", "u7"):  # u0 forgotten: read again; u7 remembered
        rate(plan, u, "m0", "unlike")
    await sink.write(plan)
    assert g.like_reads == 9
    assert sink.liked._rows == sum(len(v) for h, _ in sink.liked._held.values() for v in h.values())
    for u in ("u0", "u7"):
        liked = sorted({v for i in items[1:] for v in sink.mapper.item_label_values(g.items[i].labels)})
        assert g.written_users[u].labels == sink.mapper.with_liked(g.users[u], liked).labels
    assert ("like", "u0", "m0") not in g.feedback and ("like", "u7", "m0") not in g.feedback
