"""The one mapping from source rows to Gorse entities (declarative: see default.toml)."""

from gorse_cdc.mapping.mapper import Mapper, MissingKeyError, UnknownTableError
from gorse_cdc.mapping.ops import (
    DeleteFeedback,
    DeleteItem,
    DeleteUser,
    Operation,
    PutFeedback,
    UpsertItem,
    UpsertUser,
)
from gorse_cdc.mapping.spec import MappingSpec, load_spec
from gorse_cdc.mapping.state import Drift, GorseState, diff_states, expected_state

__all__ = [
    "DeleteFeedback",
    "DeleteItem",
    "DeleteUser",
    "Drift",
    "GorseState",
    "Mapper",
    "MappingSpec",
    "MissingKeyError",
    "Operation",
    "PutFeedback",
    "UnknownTableError",
    "UpsertItem",
    "UpsertUser",
    "diff_states",
    "expected_state",
    "load_spec",
]
