"""The sink of a dry run: counts what would be written, shows the first plans, writes nothing."""

from __future__ import annotations

from tqdm import tqdm

from consumers.coalesce import WritePlan


class DryRunSink:
    """Counts what would be written; prints the first plans. Never writes."""

    def __init__(self, show: int = 5) -> None:
        self.show = show
        self.plans = 0

    async def write(self, plan: WritePlan) -> None:
        self.plans += 1
        if self.plans <= self.show:
            parts = {
                "delete users": len(plan.delete_users),
                "delete items": len(plan.delete_items),
                "upsert items": len(plan.upsert_items),
                "upsert users": len(plan.upsert_users),
                "put feedback": len(plan.put_feedback),
                "delete stale types": len(plan.stale_feedback),
                "delete feedback": len(plan.delete_feedback),
                "liked labels of": len(plan.liked_users),
            }
            shown = ", ".join(f"{k} {v}" for k, v in parts.items() if v)
            tqdm.write(f"[dry-run] would write: {shown or 'nothing'}")
