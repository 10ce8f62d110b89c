"""Draws docs/architecture.png, the README's picture of the flow (matplotlib, bench extra):

.venv/bin/python docs/tools/architecture.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

BOXES = {
    # name: (x, y, w, h, title, detail, colour)
    "db": (
        0.2,
        4.6,
        2.8,
        1.4,
        "Source database",
        "RDS PostgreSQL\n(locally PostgreSQL 15\n+ wal2json)",
        "#dbe9f6",
    ),
    "dms": (3.8, 4.6, 2.8, 1.4, "AWS DMS", "full load + CDC\n(locally: gorse-cdc\ndms run)", "#fde9d9"),
    "kinesis": (7.4, 5.0, 2.8, 1.0, "Kinesis stream", "key = user id / movie id", "#fff2cc"),
    "s3": (7.4, 3.2, 2.8, 1.0, "S3 archive", "LOAD + CDC files", "#fff2cc"),
    "consumer": (11.0, 5.0, 3.0, 1.0, "consumers/", "leases, coalesce, idempotent", "#e2efda"),
    "glue": (11.0, 3.2, 3.0, 1.0, "glue/ reconcile", "nightly: diff, repair, report", "#e2efda"),
    "gorse": (14.9, 3.2, 2.6, 2.8, "Gorse", "master, servers,\nworker\n(or gorse-in-one)", "#ead1f5"),
    "ddb": (3.8, 1.0, 2.8, 1.3, "DynamoDB", "leases, erasure log,\nAPI keys", "#f2f2f2"),
    "events": (7.4, 1.2, 2.8, 1.0, "events stream", "gorse-cdc-events", "#fff2cc"),
    "gateway": (11.0, 1.2, 3.0, 1.0, "gateway/", "keys, JWT, limits, TLS", "#e2efda"),
    "apps": (14.9, 1.0, 2.6, 1.3, "OTT apps", "rows out, plays in", "#dbe9f6"),
}
# (from, to, label): straight lines between the points given
ARROWS = [
    ((3.0, 5.3), (3.8, 5.3), "WAL"),
    ((6.6, 5.5), (7.4, 5.5), "every change"),
    ((6.6, 4.9), (7.4, 3.7), "every change"),
    ((10.2, 5.5), (11.0, 5.5), "< 1 s"),
    ((10.2, 3.7), (11.0, 3.7), "nightly"),
    ((14.0, 5.5), (14.9, 5.5), "writes"),
    ((14.0, 3.7), (14.9, 3.7), "repairs"),
    ((14.9, 1.65), (14.0, 1.65), ""),
    ((13.4, 2.2), (15.4, 3.2), "rows"),
    ((11.0, 1.7), (10.2, 1.7), "events"),
    ((9.6, 2.2), (11.6, 5.0), ""),
]


def main() -> None:
    fig, ax = plt.subplots(figsize=(13, 5.2))
    for x, y, w, h, title, detail, colour in BOXES.values():
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=colour, ec="#555555"))
        ax.text(x + w / 2, y + h - 0.25, title, ha="center", va="top", fontsize=10, weight="bold")
        ax.text(x + w / 2, y + h / 2 - 0.2, detail, ha="center", va="center", fontsize=8, color="#333333")
    for (x1, y1), (x2, y2), label in ARROWS:
        ax.add_patch(
            FancyArrowPatch((x1, y1), (x2, y2), arrowstyle="-|>", mutation_scale=14, color="#444444", lw=1.2)
        )
        if label:
            ax.text(
                (x1 + x2) / 2,
                (y1 + y2) / 2 + 0.1,
                label,
                ha="center",
                va="bottom",
                fontsize=7.5,
                color="#1f4e79",
            )
    ax.set_xlim(0, 17.7)
    ax.set_ylim(0.8, 6.3)
    ax.axis("off")
    title = "a change in the database reaches Gorse through Kinesis; S3 lets the nightly job check it"
    ax.set_title(title, fontsize=11)
    out = Path(__file__).resolve().parents[1] / "architecture.png"
    fig.savefig(out, dpi=110, bbox_inches="tight")
    print(out)


if __name__ == "__main__":
    main()
