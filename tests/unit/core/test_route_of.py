"""Gorse request paths become bounded route templates for the latency metric."""

from __future__ import annotations

import pytest

from gorse_cdc.gorse.client import route_of


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/api/user/42", "/api/user/{id}"),
        ("/api/feedback/42/1193", "/api/feedback/{id}/{id}"),
        ("/api/feedback/unlike/42/1193", "/api/feedback/unlike/{id}/{id}"),
        ("/api/user/42/feedback/like", "/api/user/{id}/feedback/like"),
        ("/api/feedback", "/api/feedback"),
        ("/api/items?cursor=abc", "/api/items"),
        ("/api/health/ready", "/api/health/ready"),
        ("/api/item/user%2F1/neighbors", "/api/item/{id}/neighbors"),
    ],
)
def test_ids_become_placeholders(path: str, route: str) -> None:
    assert route_of(path) == route
