"""The peer benchmark's table (Markdown, as in the README) and chart (bench_engines.py)."""

from __future__ import annotations

from pathlib import Path


def chart(rows: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("(a) read path, no-op sink", "records/s", "a"),
        ("(b) with the Gorse sink", "records/s", "b"),
        ("(c) start to first record", "s", "c"),
        ("(d) failover after kill -9", "s", "d"),
        ("(e) commit -> readable p50", "s", "e50"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(17, 3.8))
    for ax, (title, unit, key) in zip(axes, panels, strict=True):
        names = [n for n in rows if key in rows[n]]
        values = [rows[n][key] for n in names]
        colors = ["#2b6cb0" if n.startswith("native") else "#dd6b20" for n in names]
        bars = ax.bar(names, values, color=colors)
        ax.bar_label(bars, labels=[f"{v:,.0f}" if v >= 100 else f"{v:.3g}" for v in values], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit)
        ax.tick_params(axis="x", labelsize=8, rotation=15)
    fig.suptitle(
        "gorse-cdc native engine vs the real KCL (MultiLangDaemon 3.1.3), same streams, same machine"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(rows: dict[str, dict[str, float]]) -> str:
    cols = [
        ("a", "(a) read, no-op sink rec/s", "{:,.0f}"),
        ("b", "(b) Gorse sink rec/s", "{:,.0f}"),
        ("c", "(c) start -> first record s", "{:.1f}"),
        ("d", "(d) failover s", "{:.1f}"),
        ("e50", "(e) fresh p50 s", "{:.2f}"),
        ("e99", "(e) fresh p99 s", "{:.2f}"),
    ]
    lines = ["| engine | " + " | ".join(c[1] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in rows.items():
        cells = [fmt.format(r[k]) if k in r else "-" for k, _, fmt in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
