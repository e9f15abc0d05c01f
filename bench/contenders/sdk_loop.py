"""Contender: msgraph-sdk-python's access-review request builders, sequential or gathered.

The client is set up as for a national cloud: AzureIdentityAuthenticationProvider over
azure-identity's ManagedIdentityCredential with the scope `{GRAPH_ENDPOINT}/.default`, and a
GraphRequestAdapter whose base URL is `{GRAPH_ENDPOINT}/v1.0`. The SDK's default middleware
stays on, so its RetryHandler retries a 429 up to 3 times after Retry-After. A request that
still fails with 429 is sent again here after Retry-After (or 1 s), at most 60 times.

- `--mode sequential`: list definitions, then each definition's InProgress instances, then
  sendReminder for each, one request at a time.
- `--mode gather`: list definitions page by page, then list every definition's instances with
  one unbounded asyncio.gather, then send every reminder with another. Only httpx's default
  pool (100 connections) limits how many are in flight.

Neither does a pending check or sends batches.

    python bench/contenders/sdk_loop.py --mode gather
"""

from __future__ import annotations

import _common  # first: installs the loopback guard

# isort: split

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from azure.identity import ManagedIdentityCredential
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.identity_governance.access_reviews.definitions.item.instances.instances_request_builder import (  # noqa: E501
    InstancesRequestBuilder,
)
from msgraph.graph_request_adapter import options as sdk_default_options
from msgraph_core import GraphClientFactory

_T = TypeVar("_T")
MAX_ATTEMPTS = 60
DEFAULT_WAIT_S = 1.0
IN_PROGRESS = "status eq 'InProgress'"


class Counts:
    def __init__(self) -> None:
        self.throttled_errors = 0
        self.failed = 0
        self.errors: dict[str, int] = {}


async def with_retries(call: Callable[[], Awaitable[_T]], counts: Counts) -> _T | None:
    """Await `call()`, sending it again after a 429 that outlasted the SDK's own retries."""
    for _ in range(MAX_ATTEMPTS):
        try:
            return await call()
        except APIError as error:
            if error.response_status_code != 429:
                key = f"{error.response_status_code}: {str(error)[:80]}"
                counts.errors[key] = counts.errors.get(key, 0) + 1
                counts.failed += 1
                return None
            counts.throttled_errors += 1
            headers = {
                name.lower(): value for name, value in (error.response_headers or {}).items()
            }
            retry_after = headers.get("retry-after")
            await asyncio.sleep(float(retry_after) if retry_after else DEFAULT_WAIT_S)
    counts.failed += 1
    return None


class Sdk:
    """A GraphServiceClient on the emulator, and what must be closed after the run."""

    def __init__(self, endpoint: str) -> None:
        self.credential = ManagedIdentityCredential()
        auth = AzureIdentityAuthenticationProvider(self.credential, scopes=[f"{endpoint}/.default"])
        # The same client and middleware GraphRequestAdapter builds by default, kept here so
        # that its connections can be closed at the end.
        self.http = GraphClientFactory.create_with_default_middleware(options=sdk_default_options)
        adapter = GraphRequestAdapter(auth, client=self.http)
        adapter.base_url = f"{endpoint}/v1.0"
        self.client = GraphServiceClient(request_adapter=adapter)

    async def aclose(self) -> None:
        await self.http.aclose()
        self.credential.close()


async def list_definition_ids(client: GraphServiceClient, counts: Counts) -> list[str]:
    builder = client.identity_governance.access_reviews.definitions
    ids: list[str] = []
    page = await with_retries(builder.get, counts)
    while page is not None:
        ids.extend(item.id for item in page.value or [] if item.id)
        if not page.odata_next_link:
            break
        next_builder = builder.with_url(page.odata_next_link)
        page = await with_retries(next_builder.get, counts)
    return ids


async def list_instance_ids(
    client: GraphServiceClient, definition_id: str, counts: Counts
) -> list[tuple[str, str]]:
    definitions = client.identity_governance.access_reviews.definitions
    builder = definitions.by_access_review_schedule_definition_id(definition_id).instances
    query = InstancesRequestBuilder.InstancesRequestBuilderGetQueryParameters(filter=IN_PROGRESS)
    config = RequestConfiguration(query_parameters=query)
    pairs: list[tuple[str, str]] = []
    page = await with_retries(lambda: builder.get(request_configuration=config), counts)
    while page is not None:
        pairs.extend((definition_id, item.id) for item in page.value or [] if item.id)
        if not page.odata_next_link:
            break
        next_builder = builder.with_url(page.odata_next_link)
        page = await with_retries(next_builder.get, counts)
    return pairs


async def send_reminder(
    client: GraphServiceClient, definition_id: str, instance_id: str, counts: Counts
) -> bool:
    definitions = client.identity_governance.access_reviews.definitions
    instance = definitions.by_access_review_schedule_definition_id(
        definition_id
    ).instances.by_access_review_instance_id(instance_id)
    failed_before = counts.failed
    await with_retries(instance.send_reminder.post, counts)
    return counts.failed == failed_before


async def run_sequential(client: GraphServiceClient, counts: Counts) -> int:
    sent = 0
    for definition_id in await list_definition_ids(client, counts):
        for _, instance_id in await list_instance_ids(client, definition_id, counts):
            sent += await send_reminder(client, definition_id, instance_id, counts)
    return sent


async def run_gathered(client: GraphServiceClient, counts: Counts) -> int:
    definition_ids = await list_definition_ids(client, counts)
    listed = await asyncio.gather(
        *(list_instance_ids(client, definition_id, counts) for definition_id in definition_ids)
    )
    targets = [pair for pairs in listed for pair in pairs]
    outcomes = await asyncio.gather(
        *(send_reminder(client, d_id, i_id, counts) for d_id, i_id in targets)
    )
    return sum(outcomes)


async def run(mode: str) -> _common.Report:
    sdk = Sdk(_common.graph_endpoint())
    counts = Counts()
    started = time.perf_counter()
    if mode == "sequential":
        sent = await run_sequential(sdk.client, counts)
    else:
        sent = await run_gathered(sdk.client, counts)
    wall_s = time.perf_counter() - started
    await sdk.aclose()
    extra: dict[str, Any] = {"throttled_errors": counts.throttled_errors, "errors": counts.errors}
    return _common.Report(wall_s=wall_s, sent=sent, failed=counts.failed, extra=extra)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("sequential", "gather"), default="sequential")
    args = parser.parse_args()
    asyncio.run(run(args.mode)).emit()


if __name__ == "__main__":
    main()
