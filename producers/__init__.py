"""Producers: a local AWS DMS (PostgreSQL logical replication -> Kinesis + S3 in DMS's exact
formats), the MovieLens 100K loader, a synthetic MovieLens-shaped generator and an OTT-like
activity generator. Library entry points:

- ``producers.dms.run_dms(settings, mode=..., until_idle=True)`` -> DmsSummary
- ``producers.activity.run_activity(settings, changes=50_000, rate=0)`` -> ActivitySummary
- ``producers.synthetic.generate(settings, users=..., movies=..., ratings=..., seed=...)``
- ``producers.movielens.load_movielens(settings, directory)``
"""
