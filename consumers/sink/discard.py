"""The sink of the read-path benchmark (settings.consumer.discard_writes): writes nothing, so
the engines' read -> decode -> map -> coalesce -> checkpoint path is measured alone. Never in
production: checkpoints then pass records that were never written to Gorse."""

from __future__ import annotations

from consumers.coalesce import WritePlan


class DiscardSink:
    def __init__(self) -> None:
        self.plans = 0

    async def write(self, plan: WritePlan) -> None:
        self.plans += 1
