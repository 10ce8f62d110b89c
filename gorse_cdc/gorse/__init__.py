"""The Gorse side: entity models with Gorse's validation rules, and the async client."""

from gorse_cdc.gorse.client import GorseClient
from gorse_cdc.gorse.models import Feedback, Item, User, validate_id, validate_labels

__all__ = ["Feedback", "GorseClient", "Item", "User", "validate_id", "validate_labels"]
