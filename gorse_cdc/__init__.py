"""gorse-cdc: keep a Gorse recommender in step with a live product database through AWS DMS."""

__version__ = "0.1.0"
