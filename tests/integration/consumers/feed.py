"""A tiny DMS stand-in for the consumer's tests: it changes the real source database and puts
the DMS-shaped records of those changes (gorse_cdc.dms.record) into a real Kinesis stream, in
commit order, partitioned like the DMS task (user_id for users and ratings, movie_id for
movies). producers/ is the full local DMS; this keeps the consumer's tests independent of it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import boto3
import psycopg

from gorse_cdc.dms.record import DmsRecord, encode_record
from gorse_cdc.mapping import Mapper
from gorse_cdc.settings import Settings

GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "Animation"]
OCCUPATIONS = ["student", "engineer", "artist", "doctor", "writer", "other"]
KEYS = {"users": ["user_id"], "movies": ["movie_id"], "ratings": ["user_id", "movie_id"]}


def _json_value(v: Any) -> Any:
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%dT%H:%M:%S.%f")
    if isinstance(v, date):
        return v.isoformat()
    return v


class Feed:
    def __init__(self, settings: Settings, stream: str, seed: int = 7) -> None:
        self.settings = settings
        self.stream = stream
        self.mapper = Mapper()
        self.rng = random.Random(seed)
        self.conn = psycopg.connect(settings.source_dsn, autocommit=False)
        self.kinesis = boto3.client("kinesis", **settings.aws_client_kwargs("kinesis"))
        self.txid = 1000
        self.users: list[int] = []
        self.movies: list[int] = []
        self.ratings: set[tuple[int, int]] = set()
        self.last_sequence: dict[str, str] = {}  # shard -> last sequence number put
        self.sent = 0

    def close(self) -> None:
        self.conn.close()

    # ---- the database ------------------------------------------------------------------------
    def truncate(self) -> None:
        self.conn.execute("TRUNCATE ratings, users, movies")
        self.conn.commit()

    def _row(self, sql: str, params: Sequence[Any]) -> dict[str, Any] | None:
        cur = self.conn.execute(sql, params)
        row = cur.fetchone()
        if row is None or cur.description is None:
            return None
        return {d.name: _json_value(v) for d, v in zip(cur.description, row, strict=True)}

    def _record(self, table: str, op: str, row: dict[str, Any], n: int) -> DmsRecord:
        data = row if op != "delete" else {k: row[k] for k in KEYS[table]}
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        return DmsRecord(
            "data",
            op,
            "public",
            table,
            data,
            {} if op == "update" else None,
            timestamp=now,
            transaction_id=self.txid if op != "load" else None,
            transaction_record_id=n if op != "load" else None,
            commit_timestamp=now if op != "load" else None,
            partition_key_type="attribute-name",
        )

    def new_user(self) -> dict[str, Any]:
        uid = (max(self.users) + 1) if self.users else 1
        row = self._row(
            "INSERT INTO users VALUES (%s,%s,%s,%s,%s) RETURNING *",
            (
                uid,
                self.rng.randint(18, 70),
                self.rng.choice("MF"),
                self.rng.choice(OCCUPATIONS),
                f"{self.rng.randint(10000, 99999)}",
            ),
        )
        self.users.append(uid)
        assert row is not None
        return row

    def new_movie(self) -> dict[str, Any]:
        mid = (max(self.movies) + 1) if self.movies else 1
        genres = "|".join(sorted(self.rng.sample(GENRES, self.rng.randint(1, 3))))
        row = self._row(
            "INSERT INTO movies VALUES (%s,%s,%s,%s) RETURNING *",
            (mid, f"Movie {mid}", date(1990, 1, 1) + timedelta(days=self.rng.randint(0, 12000)), genres),
        )
        self.movies.append(mid)
        assert row is not None
        return row

    def rate(self) -> tuple[str, dict[str, Any]]:
        u, m = self.rng.choice(self.users), self.rng.choice(self.movies)
        existed = (u, m) in self.ratings
        row = self._row(
            "INSERT INTO ratings VALUES (%s,%s,%s,%s) ON CONFLICT (user_id, movie_id) DO UPDATE "
            "SET rating = EXCLUDED.rating, rated_at = EXCLUDED.rated_at RETURNING *",
            (
                u,
                m,
                self.rng.randint(1, 5),
                datetime.now(UTC).replace(tzinfo=None, microsecond=0)
                - timedelta(seconds=self.rng.randint(0, 10**7)),
            ),
        )
        self.ratings.add((u, m))
        assert row is not None
        return ("update" if existed else "insert"), row

    # ---- changes -> records -------------------------------------------------------------------
    def load(self, users: int, movies: int, ratings: int) -> list[DmsRecord]:
        out = []
        for _ in range(users):
            out.append(self._record("users", "load", self.new_user(), 0))
        for _ in range(movies):
            out.append(self._record("movies", "load", self.new_movie(), 0))
        for _ in range(ratings):
            out.append(self._record("ratings", "load", self.rate()[1], 0))
        self.conn.commit()
        return out

    def _one_change(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        r = self.rng.random()
        if r < 0.62 or not self.ratings:
            op, row = self.rate()
            yield "ratings", op, row
        elif r < 0.74:
            u, m = self.rng.choice(sorted(self.ratings))
            row = self._row("DELETE FROM ratings WHERE user_id=%s AND movie_id=%s RETURNING *", (u, m))
            self.ratings.discard((u, m))
            if row:
                yield "ratings", "delete", row
        elif r < 0.84:
            u = self.rng.choice(self.users)
            row = self._row(
                "UPDATE users SET occupation=%s, zip=%s WHERE user_id=%s RETURNING *",
                (self.rng.choice(OCCUPATIONS), f"{self.rng.randint(10000, 99999)}", u),
            )
            if row:
                yield "users", "update", row
        elif r < 0.88:
            yield "users", "insert", self.new_user()
        elif r < 0.90 and len(self.users) > 5:
            u = self.rng.choice(self.users)  # GDPR erasure: the ratings cascade, then the user
            for m in sorted(m for (uu, m) in self.ratings if uu == u):
                row = self._row("DELETE FROM ratings WHERE user_id=%s AND movie_id=%s RETURNING *", (u, m))
                if row:
                    yield "ratings", "delete", row
                self.ratings.discard((u, m))
            row = self._row("DELETE FROM users WHERE user_id=%s RETURNING *", (u,))
            self.users.remove(u)
            if row:
                yield "users", "delete", row
        elif r < 0.97:
            m = self.rng.choice(self.movies)
            genres = "|".join(sorted(self.rng.sample(GENRES, self.rng.randint(1, 3))))
            row = self._row("UPDATE movies SET genres=%s WHERE movie_id=%s RETURNING *", (genres, m))
            if row:
                yield "movies", "update", row
        else:
            yield "movies", "insert", self.new_movie()

    def activity(self, changes: int, per_transaction: int = 5) -> list[DmsRecord]:
        out: list[DmsRecord] = []
        while len(out) < changes:
            self.txid += 1
            n = 0
            for _ in range(per_transaction):
                for table, op, row in self._one_change():
                    n += 1
                    out.append(self._record(table, op, row, n))
            self.conn.commit()
        return out

    # ---- Kinesis ---------------------------------------------------------------------------------
    def put(self, records: Sequence[DmsRecord | bytes], partition_key: str | None = None) -> None:
        entries = []
        for rec in records:
            if isinstance(rec, bytes):
                entries.append(
                    {"Data": rec, "PartitionKey": partition_key or str(self.rng.randint(1, 10**6))}
                )
            else:
                key = self.mapper.partition_key(rec.table, rec.data)
                entries.append({"Data": encode_record(rec), "PartitionKey": key})
        for start in range(0, len(entries), 500):
            chunk = entries[start : start + 500]
            resp = self.kinesis.put_records(StreamName=self.stream, Records=chunk)
            assert resp["FailedRecordCount"] == 0, resp
            for r in resp["Records"]:
                shard, seq = r["ShardId"], r["SequenceNumber"]
                if shard not in self.last_sequence or int(seq) > int(self.last_sequence[shard]):
                    self.last_sequence[shard] = seq
            self.sent += len(chunk)
