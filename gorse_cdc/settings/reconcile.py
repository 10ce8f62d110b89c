"""The nightly reconcile's settings (glue/)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ReconcileSettings(BaseModel):
    """The nightly reconcile's safety knobs (glue/)."""

    source_check: bool | None = Field(
        None,
        description="re-read drifted keys from the source DB around each repair write; None = on "
        "when repairing and a source DSN is available (local, or source.dsn set), off otherwise",
    )
    max_delete_share: float = Field(
        0.05,
        gt=0,
        le=1,
        description="refuse the repair when its planned deletes of a kind exceed this share of "
        "Gorse's current rows of that kind (1.0 = no cap)",
    )
    delete_cap_min_rows: int = Field(
        100,
        ge=0,
        description="deletes up to this many rows per kind are never refused by the share cap "
        "(a small Gorse would otherwise refuse any delete)",
    )
    force_deletes: bool = Field(
        False, description="repair even when the delete cap or a partial LOAD folder would refuse it"
    )
    relist_interval_s: float = Field(
        10.0,
        ge=0,
        description="during the repair, list the CDC folders again (to defer keys changed meanwhile) "
        "at most this often; 0 = before every chunk",
    )
    tell_owners: bool = Field(
        True,
        description="after each repaired chunk of users or feedback, put a reread refresh record per "
        "user on the DMS stream (kinesis.stream_name): its live owner forgets what it remembers of "
        "them (consumer.remember_likes needs it); off only when no consumer reads that stream",
    )
