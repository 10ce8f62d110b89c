"""The reconcile's words, as types: what kind of Gorse state, how a key drifted, how the run
ended. StrEnum members equal today's strings (Spark columns, report keys, Gorse writer kinds)
and IntEnum members the scheduler's numbers, so JSON and exit statuses are unchanged."""

from __future__ import annotations

from enum import IntEnum, StrEnum

Key = tuple[str, ...]  # a Gorse key: (user_id,), (item_id,) or (feedback_type, user_id, item_id)


class Kind(StrEnum):
    """A kind of Gorse state, named as in the export and the report."""

    USERS = "users"
    ITEMS = "items"
    FEEDBACK = "feedback"


class DriftClass(StrEnum):
    """How a key differs (``diff_states`` semantics)."""

    MISSING = "missing"  # expected, not in Gorse
    EXTRA = "extra"  # in Gorse, not expected
    CHANGED = "changed"  # same key, a normalised field differs


class ExitCode(IntEnum):
    """Exit codes for schedulers (under Glue, DRIFT is a successful run too)."""

    NO_DRIFT = 0  # deferred keys do not count
    DRIFT = 1  # repaired, or found with --dry-run, or source rows that cannot be mapped
    FAILURE = 2  # a FatalError, a failed Spark job, or writes that Gorse refused

    @classmethod
    def of(cls, *, failures: int, to_fix: int, invalid: int) -> ExitCode:
        if failures:
            return cls.FAILURE
        return cls.DRIFT if to_fix > 0 or invalid > 0 else cls.NO_DRIFT
