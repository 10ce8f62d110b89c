"""The reconcile's safety: the delete cap, partial LOAD folders, the deferral refreshed before
each repair chunk, and a delete after the cut-off never undone (with or without the source
check). Pure logic with fakes; no Spark, no stack."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from glue.cli import fold_settings, register
from glue.files import DirStore, discover, load_counters, recorded_load_files
from glue.guard import DeferralRefresh, Deferred, touched_by
from glue.job import CdcPoll, ReconcileOptions, source_check_on
from glue.reconcile_job import dsn_of, options_from, resolve_args, safety_overrides, settings_overrides
from glue.refusal import refusal
from glue.repair import PHASES, DeferReason, Repairer
from glue.safety import LoadFolder, delete_cap, partial_load
from glue.source_check import SourceDbCheck
from glue.vocabulary import DriftClass, Kind
from gorse_cdc.dms.s3files import state_key
from gorse_cdc.gorse import User
from gorse_cdc.mapping import Mapper
from gorse_cdc.retry import RateLimiter
from gorse_cdc.settings import Settings
from tests.unit.glue.dmsdata import DmsWriter, dir_put

E = DriftClass.EXTRA


# ---- the delete cap ----------------------------------------------------------------------------
def test_delete_cap_refuses_past_the_share_and_names_the_kind() -> None:
    rows = {Kind.USERS: 10_000, Kind.ITEMS: 1_000, Kind.FEEDBACK: 100_000}
    assert delete_cap({(Kind.USERS, E): 500, (Kind.FEEDBACK, E): 4_999}, rows, 0.05) is None
    why = delete_cap({(Kind.USERS, E): 501, (Kind.ITEMS, E): 10}, rows, 0.05)
    assert why is not None and why.startswith("repair refused:") and "users 501 of 10000 (5.0%)" in why
    assert "items" not in why and "\n" not in why  # one clear line
    # missing / changed rows are not deletes
    assert delete_cap({(Kind.USERS, DriftClass.MISSING): 9_000}, rows, 0.05) is None


def test_delete_cap_floor_share_one_and_bounds() -> None:
    rows = {Kind.USERS: 6}
    assert delete_cap({(Kind.USERS, E): 1}, rows, 0.05, min_rows=100) is None  # a small Gorse
    assert delete_cap({(Kind.USERS, E): 1}, rows, 0.05, min_rows=0) is not None
    assert delete_cap({(Kind.USERS, E): 6}, rows, 1.0) is None  # 1.0 = no cap, knowingly
    assert delete_cap({(Kind.USERS, E): 3}, {}, 0.5) is not None  # deletes from an empty count
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="share"):
            delete_cap({}, rows, bad)


# ---- partial LOAD folders ----------------------------------------------------------------------
def test_partial_load_gap_first_missing_and_recorded_count() -> None:
    assert partial_load(LoadFolder("users", "f/", (1, 2, 3))) is None
    assert partial_load(LoadFolder("users", "f/", ())) is None  # empty at the full load: no files
    gap = partial_load(LoadFolder("users", "dms/public/users/", (1, 3)))
    assert gap == "table users: LOAD files in dms/public/users/: 1 missing (LOAD00000002)"
    assert "LOAD00000001" in (partial_load(LoadFolder("ratings", "f/", (2, 3))) or "")
    short = partial_load(LoadFolder("movies", "f/", (1, 2), recorded=3))
    assert short is not None and "2 present, 3 recorded" in short
    expired = partial_load(LoadFolder("movies", "f/", (), recorded=2, has_cdc=True))
    assert expired is not None and "0 present, 2 recorded" in expired


def _dms(root: Path, prefix: str = "dms") -> DmsWriter:
    w = DmsWriter(dir_put(root), prefix=prefix)
    w.definitions()
    for u in range(3):
        w.load("users", [[10 * u + i, 30, "F", "x", "00000"] for i in range(1, 4)])
    w.load("movies", [[1, "m", "2001-01-01", "Drama"]])
    w.load("ratings", [[1, 1, 5, "2020-01-01 00:00:00"]])
    return w


def _tables(store: DirStore, prefix: str = "dms") -> list[Any]:
    return [discover(store, prefix, "public", t) for t in ("users", "movies", "ratings")]


def test_refusal_names_the_table_and_folder_of_a_deleted_load_file(tmp_path: Path) -> None:
    _dms(tmp_path)
    store = DirStore(tmp_path)
    s = Settings()
    assert refusal(s, store, _tables(store), {}, {}) is None
    (tmp_path / "dms/public/users/LOAD00000002.csv").unlink()
    tables = _tables(store)
    assert load_counters(tables[0]) == (1, 3)
    why = refusal(s, store, tables, {}, {})
    assert why is not None and "partial full load" in why and "table users" in why
    assert str(tmp_path / "dms/public/users/") in why and "LOAD00000002" in why
    forced = s.model_copy(update={"reconcile": s.reconcile.model_copy(update={"force_deletes": True})})
    assert refusal(forced, store, tables, {}, {}) is None


def test_recorded_load_counts_catch_a_missing_last_file(tmp_path: Path) -> None:
    _dms(tmp_path)
    dir_put(tmp_path)(
        state_key("dms", "slot"),
        orjson.dumps({"cdc_ready": True, "load_files": {"public.users": 3, "public.movies": 1}}),
    )
    store = DirStore(tmp_path)
    assert recorded_load_files(store, "dms") == {"public.users": 3, "public.movies": 1}
    assert refusal(Settings(), store, _tables(store), {}, {}) is None
    (tmp_path / "dms/public/users/LOAD00000003.csv").unlink()  # no gap: only the record knows
    why = refusal(Settings(), store, _tables(store), {}, {})
    assert why is not None and "table users" in why and "2 present, 3 recorded" in why


def test_refusal_applies_the_delete_cap_from_settings(tmp_path: Path) -> None:
    _dms(tmp_path)
    store = DirStore(tmp_path)
    counts = {(Kind.FEEDBACK, E): 900}
    rows = {Kind.FEEDBACK: 1000}
    assert "feedback 900 of 1000" in (refusal(Settings(), store, _tables(store), counts, rows) or "")
    s = Settings(reconcile={"max_delete_share": 1.0})
    assert refusal(s, store, _tables(store), counts, rows) is None
    with pytest.raises(ValueError):
        Settings(reconcile={"max_delete_share": 0})


# ---- the deferral, refreshed before each repair chunk --------------------------------------
def test_deferral_refresh_lists_again_at_most_every_interval() -> None:
    now = [0.0]
    polls: list[float] = []

    def poll(d: Deferred) -> int:
        polls.append(now[0])
        d.users.add(f"u{len(polls)}")
        return 1

    r = DeferralRefresh(Deferred(), poll, 10.0, clock=lambda: now[0])
    for t in (1.0, 5.0, 10.5, 12.0, 21.0):
        now[0] = t
        r.before_chunk()
    assert polls == [10.5, 21.0] and r.deferred.users == {"u1", "u2"} and r.listings == 2
    every = DeferralRefresh(Deferred(), poll, 0.0, clock=lambda: now[0])
    every.before_chunk()
    every.before_chunk()
    assert every.listings == 2


class FakeWriter:
    def __init__(self) -> None:
        self.upserts: list[tuple[str, list[str]]] = []
        self.deletes: list[tuple[str, list[list[str]]]] = []

    async def upsert(self, kind: str, entities: list[str]) -> None:
        self.upserts.append((kind, list(entities)))

    async def delete(self, kind: str, keys: list[list[str]]) -> None:
        self.deletes.append((kind, [list(k) for k in keys]))


def _user_rows(ids: list[str]) -> list[SimpleNamespace]:
    return [
        SimpleNamespace(
            kind="users",
            cls="missing",
            key=orjson.dumps([u]).decode(),
            entity=orjson.dumps(User(u).to_json()).decode(),
        )
        for u in ids
    ]


def _run(rep: Repairer, rows: list[SimpleNamespace]) -> None:
    phase = next(p for p in PHASES if p.kind == Kind.USERS)
    asyncio.run(rep.run_phase(phase, iter(rows), len(rows)))


def test_a_key_changed_during_the_repair_is_deferred_from_the_next_chunk_on() -> None:
    d = Deferred()
    writer = FakeWriter()
    chunks = [0]

    def refresh() -> None:  # a CDC file lands after the first chunk: it touches u3 and u1
        chunks[0] += 1
        if chunks[0] == 2:
            d.users |= {"u3", "u1"}

    rep = Repairer(writer, RateLimiter(None), d, chunk_size=2, progress=False, refresh=refresh)  # type: ignore[arg-type]
    _run(rep, _user_rows(["u1", "u2", "u3", "u4"]))
    written = [orjson.loads(e)["UserId"] for _, es in writer.upserts for e in es]
    assert written == ["u1", "u2", "u4"]  # u1 was already written; u3 is left to the stream
    assert chunks[0] == 2
    assert rep.result.deferred == {(Kind.USERS, DriftClass.MISSING): 1}
    assert [k.key for k in rep.result.deferred_sample] == [("u3",)]
    assert rep.result.deferred_sample[0].reason == DeferReason.AFTER_CUTOFF


# ---- a delete after the cut-off is never undone ------------------------------------------------
def test_guard_defers_deletes_full_row_and_key_only() -> None:
    d = Deferred()
    m = Mapper()
    touched_by(
        m, "users", [("D", {"user_id": "8", "age": "30", "gender": "F", "occupation": "x", "zip": "1"})], d
    )
    touched_by(
        m, "users", [("D", {"user_id": "9", "age": None, "gender": None, "occupation": None, "zip": None})], d
    )
    touched_by(m, "ratings", [("D", {"user_id": "7", "movie_id": "70", "rating": None, "rated_at": None})], d)
    assert {"8", "9", "7"} <= d.users and ("7", "70") in d.pairs
    for t in ("like", "unlike"):
        assert d.covers(Kind.FEEDBACK, [t, "7", "70"])
    assert d.covers(Kind.USERS, ["8"]) and d.covers(Kind.USERS, ["9"])


def test_an_erasure_landing_during_the_repair_is_not_undone_without_the_source_check(tmp_path: Path) -> None:
    w = _dms(tmp_path)
    store = DirStore(tmp_path)
    tables = _tables(store)
    s = Settings(s3={"prefix": "dms"})
    poll = CdcPoll(store, s, Mapper(), tables, exp=None)  # type: ignore[arg-type]
    d = Deferred()
    assert poll(d) == 0 and d.users == set()
    writer = FakeWriter()
    chunks = [0]

    def refresh() -> None:
        chunks[0] += 1
        if chunks[0] == 2:  # user 2 (and its rating) erased in the source mid-repair
            w.cdc("ratings", [("D", [2, 1, None, None])])
            w.cdc("users", [("D", [2, None, None, None, None])])
        poll(d)

    rep = Repairer(writer, RateLimiter(None), d, chunk_size=1, progress=False, refresh=refresh)  # type: ignore[arg-type]
    _run(rep, _user_rows(["1", "2", "3"]))
    written = [orjson.loads(e)["UserId"] for _, es in writer.upserts for e in es]
    assert written == ["1", "3"] and "2" in d.users and ("2", "1") in d.pairs
    assert poll(d) == 0  # files are read once


def test_with_the_source_check_a_key_absent_from_the_source_is_never_upserted() -> None:
    check = SourceDbCheck.__new__(SourceDbCheck)
    check._seen = {}
    check.current = lambda kind, idents: {i: (User(i[0]) if i[0] != "2" else None) for i in idents}  # type: ignore[method-assign]
    writer = FakeWriter()
    rep = Repairer(writer, RateLimiter(None), Deferred(), check=check, chunk_size=10, progress=False)  # type: ignore[arg-type]

    async def no_settle(rows: Any, w: Any) -> int:
        return 0

    check.settle = no_settle  # type: ignore[method-assign]
    _run(rep, _user_rows(["1", "2", "3"]))
    written = [orjson.loads(e)["UserId"] for _, es in writer.upserts for e in es]
    assert written == ["1", "3"]
    assert [(k.key, k.reason) for k in rep.result.deferred_sample] == [(("2",), DeferReason.SOURCE_MOVED)]


# ---- defaults and the edges that fold flags into the settings --------------------------------
def test_source_check_default_is_on_when_repairing_with_a_dsn() -> None:
    auto = ReconcileOptions(source_check=None)
    assert source_check_on(auto, Settings())  # local: the stack's PostgreSQL
    assert not source_check_on(ReconcileOptions(source_check=None, dry_run=True), Settings())
    assert not source_check_on(auto, Settings(local=False, gorse={"url": "http://g"}))
    assert source_check_on(auto, Settings(local=False, source={"dsn": "postgresql://h/db"}))
    assert not source_check_on(auto, Settings(reconcile={"source_check": False}))
    assert not source_check_on(ReconcileOptions(), Settings())  # direct callers: as before


def _cli(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    register(p.add_subparsers())
    return p.parse_args(["reconcile", *argv])


def test_cli_flags_fold_into_settings() -> None:
    s = fold_settings(_cli("--max-delete-share", "0.2", "--force-deletes", "--no-source-check"), Settings())
    assert (s.reconcile.max_delete_share, s.reconcile.force_deletes, s.reconcile.source_check) == (
        0.2,
        True,
        False,
    )
    assert fold_settings(_cli(), Settings()).reconcile.source_check is None
    for bad in ("0", "1.5", "x"):
        with pytest.raises(SystemExit):
            _cli("--max-delete-share", bad)


def test_glue_safety_arguments_and_source_dsn_secret() -> None:
    args = resolve_args(["s.py", "--JOB_NAME", "j", "--MAX_DELETE_SHARE", "0.1", "--FORCE_DELETES", "false"])
    over = settings_overrides(args)
    over.update(safety_overrides(args))
    s = Settings(**over)
    assert s.reconcile.max_delete_share == 0.1 and not s.reconcile.force_deletes
    assert options_from(args).source_check is None
    assert options_from({"JOB_NAME": "j", "SOURCE_CHECK": "true"}).source_check is True
    with pytest.raises(ValueError):
        Settings(**safety_overrides({"MAX_DELETE_SHARE": "2"}))
    assert dsn_of("postgresql://u:p@h/db", "s") == "postgresql://u:p@h/db"
    assert dsn_of('{"dsn": "postgresql://h/x"}', "s") == "postgresql://h/x"
    rds = dsn_of(
        '{"username": "u", "password": "p w", "host": "db.internal", "port": 5432, "dbname": "ott"}', "s"
    )
    assert "host=db.internal" in rds and "dbname=ott" in rds and "sslmode=require" in rds
    dms_user = dsn_of('{"username": "u", "password": "p", "host": "h", "port": 5432}', "s", "films")
    assert "dbname=films" in dms_user and "port=5432" in dms_user
