"""The readings that no process exports by itself, as Prometheus gauges (``gorse-cdc status
--serve-metrics PORT``, a part of the local stack scraped by its Prometheus): the replication
slot (also while no DMS runs), the dead-letter store, the last reconcile report, each shard's
position seen from Kinesis (also while no consumer runs) and Gorse's reachability."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from gorse_cdc.status.model import Readings, Verdict


class StatusGauges:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        p = "gorse_cdc"
        self.slot_lag = Gauge(
            f"{p}_slot_lag_bytes", "WAL end minus the slot's confirmed LSN", ["slot"], registry=r
        )
        self.slot_retained = Gauge(
            f"{p}_slot_retained_bytes",
            "WAL the slot keeps on the source (from restart_lsn)",
            ["slot"],
            registry=r,
        )
        self.slot_active = Gauge(
            f"{p}_slot_active", "1 while a reader (the DMS) holds the slot", ["slot"], registry=r
        )
        self.letters = Gauge(
            f"{p}_dead_letters_stored", "letters in the dead-letter store", ["store"], registry=r
        )
        self.letters_age = Gauge(
            f"{p}_dead_letters_oldest_age_seconds", "age of the oldest stored letter", ["store"], registry=r
        )
        self.drift = Gauge(
            f"{p}_reconcile_drift_keys", "drifted keys in the last reconcile report", registry=r
        )
        self.report_age = Gauge(
            f"{p}_reconcile_report_age_seconds", "age of the last reconcile report", registry=r
        )
        self.report_exit = Gauge(f"{p}_reconcile_exit_code", "the last reconcile's exit code", registry=r)
        self.behind = Gauge(
            f"{p}_shard_behind_seconds",
            "age of the oldest record after the shard's checkpoint (from Kinesis)",
            ["stream", "shard"],
            registry=r,
        )
        self.owned = Gauge(
            f"{p}_shard_owned", "1 when a worker holds the lease", ["stream", "shard"], registry=r
        )
        self.gorse_up = Gauge(f"{p}_gorse_up", "1 when Gorse answers and is ready", registry=r)
        self.findings = Gauge(
            f"{p}_status_findings", "findings of gorse-cdc status", ["severity"], registry=r
        )
        self.readable = Gauge(f"{p}_status_readable", "1 when every part could be read", registry=r)

    def update(self, r: Readings, v: Verdict) -> None:
        for g in (self.slot_lag, self.slot_retained, self.slot_active, self.behind, self.owned):
            g.clear()
        if r.source is not None:
            for s in r.source.slots:
                self.slot_lag.labels(s.name).set(s.lag_bytes)
                self.slot_retained.labels(s.name).set(s.retained_bytes)
                self.slot_active.labels(s.name).set(1 if s.active else 0)
        d = r.dead_letters
        if d is not None and not d.unreadable:
            self.letters.labels(d.store).set(d.count)
            self.letters_age.labels(d.store).set(d.oldest_age_s or 0)
        rec = r.reconcile
        if rec is not None and rec.key is not None:
            self.drift.set(rec.drift_total or 0)
            self.report_age.set((rec.age_h or 0) * 3600)
            self.report_exit.set(rec.exit_code or 0)
        for stream in r.streams:
            for row in stream.shards:
                if row.ended:
                    continue
                if row.behind_ms is not None:
                    self.behind.labels(stream.stream, row.shard).set(row.behind_ms / 1000)
                self.owned.labels(stream.stream, row.shard).set(1 if row.owner else 0)
        if r.gorse is not None:
            self.gorse_up.set(1 if r.gorse.reachable and r.gorse.ready else 0)
        counts = {"page": 0, "warn": 0}
        for f in v.findings:
            counts[f.severity.value] = counts.get(f.severity.value, 0) + 1
        for severity, n in counts.items():
            self.findings.labels(severity).set(n)
        unreadable = any(f.what == "StatusUnreadable" for f in v.findings)
        self.readable.set(0 if unreadable else 1)
