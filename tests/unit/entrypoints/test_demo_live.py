"""What `make demo` says about the user's row: OK only when the row is personal, is not Latest
and showed Gorse's answer to the like within a second."""

from __future__ import annotations

from entrypoints.demo_live import LiveRow


def film(i: str) -> dict[str, str]:
    return {"id": i, "title": f"Film {i}"}


def row(**kw: object) -> LiveRow:
    r = LiveRow("1", before=[film("a"), film("b")], source="personal", latest=["x", "y"])
    r.liked, r.after, r.neighbours = film("a"), [film("b"), film("c")], {"c"}
    r.landed_s, r.reacted_s = 0.8, 0.05
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def test_the_demo_row_is_ok_only_when_personal_not_latest_and_fast() -> None:
    assert row().ok
    text = "\n".join(row().describe())
    assert "differs from Latest" in text and "(<= 1 s: OK)" in text and "1 of its 2 films are new" in text
    assert not row(source="latest").ok
    assert not row(latest=["a", "b"]).ok and "IS Latest" in "\n".join(row(latest=["a", "b"]).describe())
    assert not row(reacted_s=1.5).ok and "FAILED" in "\n".join(row(reacted_s=1.5).describe())
    assert not row(reacted_s=None).ok and not row(landed_s=None, reacted_s=None).ok
