"""Takes docs/gateway-demo.png, the demo home screen in headless Chromium (the project's own
Chromium and DevTools helper, tests/integration/gateway/browser.py), after `make demo`: user 1's
rows, then ♥ on the first card of "Recommended for you", once the row shows Gorse's answer.

.venv/bin/python docs/tools/gateway_screenshot.py [--user 1] [--out docs/gateway-demo.png]

Needs the gateway the demo left running; makes an admin key for the page (revoke it after with
`gorse-cdc gateway keys revoke KEY_ID`, printed here).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: tests/ is no package

from entrypoints.stack.install import ensure_chromium
from gateway.keys import Role, key_id_of
from gateway.wiring import key_store, open_aws
from gorse_cdc.settings import Settings
from tests.integration.gateway.browser import chromium


async def admin_key(settings: Settings) -> str:
    async with open_aws(settings, "dynamodb") as (dynamodb,):
        _, key = await key_store(settings, dynamodb).create(Role.ADMIN, 50.0, 100, "gateway screenshot")
        return key


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--user", default="1")
    p.add_argument("--out", type=Path, default=Path("docs/gateway-demo.png"))
    args = p.parse_args()
    settings = Settings()
    key = await admin_key(settings)
    url = f"https://{settings.gateway.host}:{settings.gateway_port}/?user={args.user}#key={key}"
    async with chromium(ensure_chromium(), url) as page:
        await page.wait_for("document.querySelectorAll('#personal .card').length >= 3", 30)
        await page.wait_for("document.getElementById('status').textContent.startsWith('loaded')", 30)
        await page.eval("document.querySelector('#personal .card button.like').click()")
        await page.wait_for("document.getElementById('status').textContent.startsWith('liked')", 30)
        status = await page.eval("document.getElementById('status').textContent")
        await page.screenshot(args.out)
    print(f"{args.out}: {status}")
    print(f"admin key made for the page: {key_id_of(key)} (gorse-cdc gateway keys revoke ID)")


if __name__ == "__main__":
    asyncio.run(main())
