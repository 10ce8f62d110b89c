"""The Gorse client against the real Gorse server (gorse-in-one v0.5.11)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from gorse_cdc.errors import GorseFatalError, GorsePermanentError
from gorse_cdc.gorse import Feedback, GorseClient, Item, User
from gorse_cdc.settings import Settings

N_USERS, N_ITEMS, N_FEEDBACK = 10_000, 2_000, 100_000
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _users() -> list[User]:
    occupations = ["engineer", "artist", "student", "doctor"]
    return [
        User(
            f"u{i}",
            {"age": 18 + i % 60, "gender": "MF"[i % 2], "occupation": occupations[i % 4], "zip": f"{i:05d}"},
            f"user {i}",
        )
        for i in range(N_USERS)
    ]


def _items() -> list[Item]:
    genres = ["Action", "Comedy", "Drama", "Horror", "Sci-Fi"]
    return [
        Item(
            f"m{i}",
            {"genres": [genres[i % 5], genres[(i + 2) % 5]], "year": 1950 + i % 70},
            (genres[i % 5],),
            T0 - timedelta(days=i),
            f"Movie {i}",
        )
        for i in range(N_ITEMS)
    ]


def _feedback() -> list[Feedback]:
    rng = random.Random(7)
    seen: set[tuple[int, int]] = set()
    out: list[Feedback] = []
    while len(out) < N_FEEDBACK:
        u, i = rng.randrange(N_USERS), rng.randrange(N_ITEMS)
        if (u, i) in seen:
            continue
        seen.add((u, i))
        rating = rng.randint(1, 5)
        out.append(
            Feedback(
                "like" if rating >= 4 else "unlike",
                f"u{u}",
                f"m{i}",
                float(rating),
                T0 + timedelta(seconds=len(out)),
            )
        )
    return out


@pytest.fixture
async def client(fresh_gorse: object, settings: Settings) -> GorseClient:
    async with GorseClient.from_settings(settings) as c:
        yield c


async def test_bulk_write_read_back_exact(client: GorseClient) -> None:
    users, items, feedback = _users(), _items(), _feedback()
    await client.upsert_users(users)
    await client.upsert_items(items)
    await client.put_feedback(feedback)

    got_users = {u.user_id: u for u in await client.export_users()}
    got_items = {i.item_id: i for i in await client.export_items()}
    got_feedback = {f.key: f for f in await client.export_feedback()}
    assert len(got_users) == N_USERS
    assert len(got_items) == N_ITEMS
    assert len(got_feedback) == N_FEEDBACK

    rng = random.Random(1)
    for u in rng.sample(users, 50):
        assert got_users[u.user_id] == u
    for i in rng.sample(items, 50):
        assert got_items[i.item_id] == i
    for f in rng.sample(feedback, 200):
        g = got_feedback[f.key]
        assert (g.value, g.timestamp, g.comment) == (f.value, f.timestamp, f.comment)
    # the paginated REST listing agrees with the bulk export
    listed = [u async for u in client.iter_users(page_size=2_000)]
    assert len(listed) == N_USERS


async def test_put_feedback_twice_keeps_value(client: GorseClient) -> None:
    fb = Feedback("like", "u-twice", "m-twice", 5.0, T0)
    await client.put_feedback([fb])
    await client.put_feedback([fb])
    got = await client.user_feedback("u-twice", "like")
    assert [(g.item_id, g.value) for g in got] == [("m-twice", 5.0)]


async def test_delete_user_removes_feedback(client: GorseClient) -> None:
    await client.upsert_users([User("u-gone", {"age": 30})])
    await client.put_feedback(
        [Feedback("like", "u-gone", "m1", 4.0, T0), Feedback("unlike", "u-gone", "m2", 2.0, T0)]
    )
    await client.put_feedback([Feedback("like", "u-stays", "m1", 4.0, T0)])
    assert len(await client.user_feedback("u-gone")) == 2
    await client.delete_user("u-gone")
    assert await client.get_user("u-gone") is None
    remaining = await client.export_feedback()
    assert [f.user_id for f in remaining] == ["u-stays"]


async def test_delete_feedback_by_type_and_all_types(client: GorseClient) -> None:
    await client.put_feedback(
        [Feedback("like", "u1", "m1", 4.0, T0), Feedback("unlike", "u1", "m1", 1.0, T0)]
    )
    assert await client.delete_feedback("u1", "m1", "unlike") == 1
    assert [f.feedback_type for f in await client.user_feedback("u1")] == ["like"]
    await client.put_feedback([Feedback("unlike", "u1", "m1", 1.0, T0)])
    await client.delete_feedback("u1", "m1")
    assert await client.user_feedback("u1") == []


async def test_permanent_error_carries_gorse_message_not_key(client: GorseClient, settings: Settings) -> None:
    key = settings.gorse.api_key.get_secret_value()
    with pytest.raises(GorsePermanentError) as info:
        await client._request("POST", "/api/users", body=[{"UserId": "x", "Labels": [True]}])
    assert 400 <= (info.value.status or 0) < 500
    assert key not in str(info.value) and key not in repr(client)


async def test_wrong_api_key_is_the_pipelines_fault_not_a_records(settings: Settings) -> None:
    async with GorseClient(settings.gorse_url, "not-the-key") as c:
        with pytest.raises(GorseFatalError) as info:
            await c.upsert_users([User("u")])
    assert info.value.status == 401
    assert "not-the-key" not in str(info.value)
