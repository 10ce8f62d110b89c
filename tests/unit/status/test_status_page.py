"""The status page's files obey the gateway's CSP (script and style from the gateway itself,
nothing inline) and keep the key for the tab only; its data route is for admin keys."""

from __future__ import annotations

import re
from importlib import resources

from aiohttp import web

from gateway.keys import Role
from gateway.routes import ACCESS, add_routes


def test_the_page_has_no_inline_script_or_style_and_keeps_the_key_for_the_tab() -> None:
    static = resources.files("gateway").joinpath("static")
    page = static.joinpath("status.html").read_text()
    script = static.joinpath("status.js").read_text()
    assert "<script>" not in page and "<style" not in page and " style=" not in page
    assert not re.search(r"\son[a-z]+=", page)  # no inline event handlers
    assert '<script src="/status.js">' in page and 'href="/status.css"' in page
    assert "localStorage" not in script and "sessionStorage" in script
    assert "innerHTML" not in script  # readings are set as text, never parsed as markup


def test_the_status_document_is_for_admin_keys_only() -> None:
    add_routes(web.Application())
    assert ACCESS["status"] == frozenset({Role.ADMIN})
    assert "status-page" not in ACCESS  # the page is public: it holds no data
