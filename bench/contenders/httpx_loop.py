"""Contender: the plain script an admin might write, one request at a time with httpx.

It lists the definitions, lists each definition's InProgress instances, and posts sendReminder
for each, in that order and never two requests at once. A 429 is waited out with
asyncio.sleep(Retry-After) and the request is sent again. It does no pending check and sends
no batches. The token comes once from azure-identity's ManagedIdentityCredential.

    python bench/contenders/httpx_loop.py
"""

from __future__ import annotations

import _common  # first: installs the loopback guard

# isort: split

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from azure.identity import ManagedIdentityCredential

DEFINITIONS = "/identityGovernance/accessReviews/definitions"
IN_PROGRESS = "$filter=status eq 'InProgress'"
# A request throttled this many times in a row is given up, so the run always ends.
MAX_ATTEMPTS = 60
# Wait used when a 429 comes without Retry-After.
DEFAULT_WAIT_S = 1.0


class Counts:
    def __init__(self) -> None:
        self.throttled = 0
        self.failed = 0


async def send(
    http: httpx.AsyncClient, method: str, url: str, counts: Counts
) -> httpx.Response | None:
    """Send one request, waiting out 429s. Return None when it failed for good."""
    for _ in range(MAX_ATTEMPTS):
        response = await http.request(method, url)
        if response.status_code != 429:
            if response.is_success:
                return response
            counts.failed += 1
            return None
        counts.throttled += 1
        retry_after = response.headers.get("retry-after", "")
        await asyncio.sleep(float(retry_after) if retry_after else DEFAULT_WAIT_S)
    counts.failed += 1
    return None


async def pages(http: httpx.AsyncClient, url: str, counts: Counts) -> AsyncIterator[dict[str, Any]]:
    next_url: str | None = url
    while next_url:
        response = await send(http, "GET", next_url, counts)
        if response is None:
            return
        body = response.json()
        for item in body.get("value", []):
            yield item
        next_url = body.get("@odata.nextLink")


async def run() -> _common.Report:
    root = _common.graph_endpoint() + "/v1.0"
    credential = ManagedIdentityCredential()
    started = time.perf_counter()
    # The credential is synchronous. A script calls it once per run, as here.
    token = credential.get_token(_common.graph_endpoint() + "/.default").token
    counts = Counts()
    sent = 0
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    async with httpx.AsyncClient(headers=headers, timeout=30.0) as http:
        async for definition in pages(http, root + DEFINITIONS, counts):
            instances = f"{root}{DEFINITIONS}/{definition['id']}/instances?{IN_PROGRESS}"
            async for instance in pages(http, instances, counts):
                path = f"{DEFINITIONS}/{definition['id']}/instances/{instance['id']}/sendReminder"
                if await send(http, "POST", root + path, counts) is not None:
                    sent += 1
    wall_s = time.perf_counter() - started
    credential.close()
    return _common.Report(
        wall_s=wall_s, sent=sent, failed=counts.failed, extra={"throttled_seen": counts.throttled}
    )


def main() -> None:
    asyncio.run(run()).emit()


if __name__ == "__main__":
    main()
