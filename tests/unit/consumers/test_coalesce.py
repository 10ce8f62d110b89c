"""Coalescing must be equivalent to applying every operation in commit order."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.coalesce import PlanBuilder, WritePlan, coalesce
from gorse_cdc.gorse.models import Feedback, Item, User
from gorse_cdc.mapping.ops import (
    DeleteFeedback,
    DeleteItem,
    DeleteUser,
    Operation,
    PutFeedback,
    UpsertItem,
    UpsertUser,
)

TYPES = ("like", "unlike")


@dataclass
class Model:
    """Gorse's semantics for the operations. Auto-insertion of users/items by feedback is left
    out: in the source the entities exist first (foreign keys), and a user touched by feedback
    is rewritten by the liked-labels phase anyway."""

    users: dict[str, User] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)
    feedback: dict[tuple[str, str, str], Feedback] = field(default_factory=dict)

    def delete_user(self, u: str) -> None:
        self.users.pop(u, None)
        self.feedback = {k: v for k, v in self.feedback.items() if k[1] != u}

    def delete_item(self, i: str) -> None:
        self.items.pop(i, None)
        self.feedback = {k: v for k, v in self.feedback.items() if k[2] != i}

    def put(self, fb: Feedback) -> None:
        self.feedback[fb.key] = fb

    def apply(self, op: Operation) -> None:
        if isinstance(op, UpsertUser):
            self.users[op.user.user_id] = op.user
        elif isinstance(op, DeleteUser):
            self.delete_user(op.user_id)
        elif isinstance(op, UpsertItem):
            self.items[op.item.item_id] = op.item
        elif isinstance(op, DeleteItem):
            self.delete_item(op.item_id)
        elif isinstance(op, PutFeedback):
            self.put(op.feedback)
            for t in op.stale_types:
                self.feedback.pop((t, op.feedback.user_id, op.feedback.item_id), None)
        else:
            for t in TYPES:
                self.feedback.pop((t, op.user_id, op.item_id), None)

    def execute(self, plan: WritePlan) -> None:
        for u in plan.delete_users:
            self.delete_user(u)
        for i in plan.delete_items:
            self.delete_item(i)
        self.items.update(plan.upsert_items)
        for fb in plan.put_feedback.values():
            self.put(fb)
        for t, u, i in plan.stale_feedback:
            self.feedback.pop((t, u, i), None)
        for u, i in plan.delete_feedback:
            for t in TYPES:
                self.feedback.pop((t, u, i), None)
        self.users.update(plan.upsert_users)


ids = st.sampled_from(["1", "2", "3"])
label = st.integers(0, 3)


def _put(u: str, i: str, rating: int) -> PutFeedback:
    t = "like" if rating >= 4 else "unlike"
    return PutFeedback(Feedback(t, u, i, float(rating)), tuple(x for x in TYPES if x != t))


operations = st.one_of(
    st.builds(lambda u, v: UpsertUser(User(u, {"age": v})), ids, label),
    st.builds(DeleteUser, ids),
    st.builds(lambda i, v: UpsertItem(Item(i, {"genres": [str(v)]})), ids, label),
    st.builds(DeleteItem, ids),
    st.builds(_put, ids, ids, st.integers(1, 5)),
    st.builds(DeleteFeedback, ids, ids),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(operations, max_size=25), st.lists(operations, max_size=8))
def test_plan_equals_sequential_application(prefix: list[Operation], ops: list[Operation]) -> None:
    sequential, planned = Model(), Model()
    for op in prefix:
        sequential.apply(op)
        planned.apply(op)
    for op in ops:
        sequential.apply(op)
    planned.execute(coalesce(ops))
    assert planned == sequential


@settings(max_examples=200, deadline=None)
@given(st.lists(operations, max_size=25))
def test_liked_users_cover_every_surviving_feedback_change(ops: list[Operation]) -> None:
    plan = coalesce(ops)
    touched = {u for u, _ in plan.put_feedback} | {u for u, _ in plan.delete_feedback}
    finally_deleted = set(plan.delete_users) - set(plan.upsert_users)
    assert touched - finally_deleted <= plan.liked_users
    assert not plan.liked_users & finally_deleted


def test_delete_then_reinsert_keeps_the_delete() -> None:
    user = User("7", {"age": 30})
    plan = coalesce([UpsertUser(User("7")), DeleteUser("7"), UpsertUser(user)])
    assert plan.delete_users == ["7"]
    assert plan.upsert_users == {"7": user}


def test_feedback_after_delete_user_survives_and_before_is_dropped() -> None:
    plan = coalesce([_put("1", "9", 5), DeleteUser("1"), _put("1", "8", 2)])
    assert plan.delete_users == ["1"]
    assert list(plan.put_feedback) == [("1", "8")]
    assert plan.stale_feedback == [("like", "1", "8")]


def test_threshold_crossing_deletes_the_old_type() -> None:
    plan = coalesce([_put("1", "9", 5), _put("1", "9", 3)])
    assert plan.put_feedback[("1", "9")].feedback_type == "unlike"
    assert plan.stale_feedback == [("like", "1", "9")]
    assert plan.liked_users == {"1"}


def test_fresh_insert_alone_skips_stale_deletes_but_not_after_a_delete() -> None:
    fb = Feedback("unlike", "1", "7", 2.0)
    alone = coalesce([PutFeedback(fb, ("like",), fresh=True)])
    assert alone.stale_feedback == [] and alone.put_feedback == {("1", "7"): fb}
    # deleted then re-inserted in one batch: the delete is dropped, so the stale types must go
    after_delete = coalesce([DeleteFeedback("1", "7"), PutFeedback(fb, ("like",), fresh=True)])
    assert after_delete.stale_feedback == [("like", "1", "7")]
    updated = coalesce([PutFeedback(fb, ("like",), fresh=False)])
    assert updated.stale_feedback == [("like", "1", "7")]


def test_an_erasure_cascade_is_one_user_delete_not_one_call_per_rating() -> None:
    cascade = [DeleteFeedback("1", str(i)) for i in range(100)]
    builder = PlanBuilder().extend([DeleteUser("1"), *cascade, DeleteItem("9"), DeleteFeedback("2", "9")])
    plan = builder.build()
    assert plan.delete_users == ["1"] and plan.delete_items == ["9"]
    assert plan.delete_feedback == []
    assert builder.wiped_deletes == 101
    assert "1" not in plan.liked_users
    assert "2" in plan.liked_users  # lost a liked item: labels recomputed


def test_a_feedback_delete_after_a_reput_past_the_wipe_is_kept() -> None:
    plan = coalesce([DeleteUser("1"), UpsertUser(User("1")), _put("1", "8", 5), DeleteFeedback("1", "8")])
    assert plan.delete_feedback == [("1", "8")]
    assert plan.put_feedback == {}


def test_ratings_a_users_delete_takes_with_it_are_checked_for_blank_items() -> None:
    """Their own deletes are moot beside the user's (Gorse drops a deleted user's feedback),
    but the items they were on may be blanks Gorse auto-inserted: the plan names them."""
    like = Feedback("like", "u1", "m1", 5.0)
    ops: list[Operation] = [
        PutFeedback(like, stale_types=("unlike",)),
        DeleteFeedback("u1", "m2"),  # deleted before the user, in the same plan
        DeleteUser("u1"),
        DeleteFeedback("u1", "m3"),  # the cascade after the user's delete
        DeleteFeedback("u2", "m4"),  # another user's: an ordinary delete
        DeleteItem("m5"),
        DeleteFeedback("u9", "m5"),  # its item is deleted: no blank possible
    ]
    plan = coalesce(ops)
    assert plan.delete_users == ["u1"] and plan.delete_feedback == [("u2", "m4")]
    assert plan.orphan_checks == {"m1", "m2", "m3"}
