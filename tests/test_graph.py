"""Unit tests of the Graph client over httpx.MockTransport. End-to-end tests use real sockets."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from review_reminders.errors import (
    GraphConnectionError,
    GraphError,
    GraphNotFoundError,
    GraphPermissionError,
    GraphThrottledError,
    GraphUnknownOutcomeError,
)
from review_reminders.graph import GraphClient, parse_error
from review_reminders.settings import Settings
from tests.conftest import FakeClock

ENDPOINT = "https://graph.example.test"
DEF = "11111111-1111-1111-1111-111111111111"
INST = "22222222-2222-2222-2222-222222222222"
TOKEN = "secret-token-value"
REMIND_URL = (
    f"{ENDPOINT}/v1.0/identityGovernance/accessReviews/definitions/{DEF}/instances/{INST}"
    "/sendReminder"
)


class StaticToken:
    def __init__(self) -> None:
        self.calls = 0

    async def get_token(self) -> str:
        self.calls += 1
        return TOKEN


Handler = Callable[[httpx.Request], httpx.Response]


def make_client(
    handler: Handler, clock: FakeClock, *, budget_s: float = 30.0
) -> tuple[GraphClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    settings = Settings(graph_endpoint=ENDPOINT, retry_budget_s=budget_s)
    http = httpx.AsyncClient(transport=httpx.MockTransport(record))
    client = GraphClient(settings, StaticToken(), http=http, clock=clock, batching=False)
    return client, seen


def replies(*responses: httpx.Response | Exception) -> Handler:
    queue = list(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        item = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(item, Exception):
            raise item
        return item

    return handler


def envelope(
    code: str, message: str = "went wrong", request_id: str = "rid-1"
) -> dict[str, object]:
    return {"error": {"code": code, "message": message, "innerError": {"request-id": request_id}}}


# Error envelope parsing


def test_parse_error_full_envelope() -> None:
    details = parse_error(httpx.Response(403, json=envelope("Authorization_RequestDenied")))
    assert details.code == "Authorization_RequestDenied"
    assert details.message == "went wrong"
    assert details.request_id == "rid-1"


def test_parse_error_prefers_header_request_id() -> None:
    response = httpx.Response(500, json=envelope("x"), headers={"request-id": "from-header"})
    assert parse_error(response).request_id == "from-header"


def test_parse_error_empty_code_no_inner() -> None:
    details = parse_error(httpx.Response(400, json={"error": {"code": "", "message": "bad"}}))
    assert details.code == ""
    assert details.message == "bad"
    assert details.request_id is None


@pytest.mark.parametrize(
    "body",
    [b"<html><body>Bad Gateway</body></html>", b"", b"[1, 2]", b'{"error": "text"}', b"\xff\xfe"],
)
def test_parse_error_odd_bodies(body: bytes) -> None:
    details = parse_error(httpx.Response(502, content=body))
    assert details.code == ""
    assert details.message == "Bad Gateway"


def test_parse_error_message_truncated() -> None:
    details = parse_error(httpx.Response(400, json=envelope("x", "m" * 5000)))
    assert len(details.message) == 300


# Retries


async def test_429_fractional_retry_after_honoured(clock: FakeClock) -> None:
    graph, seen = make_client(
        replies(httpx.Response(429, headers={"Retry-After": "0.7"}), httpx.Response(204)), clock
    )
    await graph.send_reminder(DEF, INST)
    assert len(seen) == 2
    assert clock.sleeps == [0.7]


async def test_429_http_date_retry_after_honoured(clock: FakeClock) -> None:
    clock.now = 1_800_000_000.0
    date = "Fri, 15 Jan 2027 08:00:03 GMT"
    graph, seen = make_client(
        replies(httpx.Response(429, headers={"Retry-After": date}), httpx.Response(204)), clock
    )
    await graph.send_reminder(DEF, INST)
    assert len(seen) == 2
    assert clock.sleeps == [pytest.approx(3.0)]


async def test_503_without_retry_after_backs_off(clock: FakeClock) -> None:
    graph, seen = make_client(
        replies(httpx.Response(503), httpx.Response(503), httpx.Response(204)), clock
    )
    await graph.send_reminder(DEF, INST)
    assert len(seen) == 3
    assert 0.25 <= clock.sleeps[0] <= 0.5
    assert 0.5 <= clock.sleeps[1] <= 1.0


async def test_throttling_past_budget_raises(clock: FakeClock) -> None:
    graph, seen = make_client(
        replies(
            httpx.Response(429, headers={"Retry-After": "4"}, json=envelope("TooManyRequests"))
        ),
        clock,
        budget_s=10,
    )
    with pytest.raises(GraphThrottledError) as caught:
        await graph.send_reminder(DEF, INST)
    assert len(seen) == 3
    assert caught.value.retry_after_s == 4.0
    assert sum(clock.sleeps) <= 10


async def test_retry_after_longer_than_budget_fails_fast(clock: FakeClock) -> None:
    graph, seen = make_client(
        replies(httpx.Response(429, headers={"Retry-After": "3600"})), clock, budget_s=45
    )
    with pytest.raises(GraphThrottledError):
        await graph.send_reminder(DEF, INST)
    assert len(seen) == 1
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, GraphError),
        (401, GraphPermissionError),
        (403, GraphPermissionError),
        (404, GraphNotFoundError),
        (500, GraphError),
        (409, GraphError),
    ],
)
async def test_post_errors_not_retried(
    clock: FakeClock, status: int, error: type[GraphError]
) -> None:
    graph, seen = make_client(replies(httpx.Response(status, json=envelope("Code"))), clock)
    with pytest.raises(error):
        await graph.send_reminder(DEF, INST)
    assert len(seen) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_get_client_errors_not_retried(clock: FakeClock, status: int) -> None:
    graph, seen = make_client(replies(httpx.Response(status, json=envelope("Code"))), clock)
    with pytest.raises(GraphError):
        await graph.get_instance(DEF, INST)
    assert len(seen) == 1


async def test_get_500_retried(clock: FakeClock) -> None:
    instance = {"id": INST, "status": "InProgress"}
    graph, seen = make_client(
        replies(httpx.Response(500), httpx.Response(200, json=instance)), clock
    )
    found = await graph.get_instance(DEF, INST)
    assert found.status == "InProgress"
    assert len(seen) == 2


async def test_post_504_reported_not_resent(clock: FakeClock) -> None:
    graph, seen = make_client(replies(httpx.Response(504)), clock)
    with pytest.raises(GraphUnknownOutcomeError):
        await graph.send_reminder(DEF, INST)
    assert len(seen) == 1


async def test_post_read_timeout_reported_not_resent(clock: FakeClock) -> None:
    graph, seen = make_client(replies(httpx.ReadTimeout("slow")), clock)
    with pytest.raises(GraphUnknownOutcomeError) as caught:
        await graph.send_reminder(DEF, INST)
    assert len(seen) == 1
    assert caught.value.request_id == seen[0].headers["client-request-id"]


async def test_post_connect_error_retried(clock: FakeClock) -> None:
    graph, seen = make_client(replies(httpx.ConnectError("refused"), httpx.Response(204)), clock)
    await graph.send_reminder(DEF, INST)
    assert len(seen) == 2


async def test_get_timeout_retried_until_budget(clock: FakeClock) -> None:
    graph, seen = make_client(replies(httpx.ReadTimeout("slow")), clock, budget_s=5)
    with pytest.raises(GraphConnectionError):
        await graph.get_instance(DEF, INST)
    assert len(seen) > 2
    assert sum(clock.sleeps) <= 5


# Requests and paging


async def test_request_carries_token_and_ids(clock: FakeClock) -> None:
    graph, seen = make_client(replies(httpx.Response(204, headers={"request-id": "r-9"})), clock)
    request_id = await graph.send_reminder(DEF.upper(), INST)
    assert request_id == "r-9"
    assert str(seen[0].url) == REMIND_URL
    assert seen[0].method == "POST"
    assert seen[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert seen[0].headers["client-request-id"]


async def test_token_absent_from_error(clock: FakeClock) -> None:
    graph, _ = make_client(replies(httpx.Response(403, json=envelope("Denied"))), clock)
    with pytest.raises(GraphPermissionError) as caught:
        await graph.send_reminder(DEF, INST)
    assert TOKEN not in str(caught.value)
    assert "AccessReview.ReadWrite.All" in str(caught.value)
    assert "24 hours" in str(caught.value)
    assert "rid-1" in str(caught.value)


@pytest.mark.parametrize("bad", ["../me", DEF + "/x", "", "%2e%2e", DEF + "?$x=1"])
async def test_non_guid_ids_never_sent(clock: FakeClock, bad: str) -> None:
    graph, seen = make_client(replies(httpx.Response(204)), clock)
    with pytest.raises(ValueError, match="GUID"):
        await graph.send_reminder(DEF, bad)
    assert seen == []


async def test_paging_follows_next_link_as_given(clock: FakeClock) -> None:
    base = f"{ENDPOINT}/v1.0/identityGovernance/accessReviews/definitions/{DEF}/instances"
    next_link = f"{base}?$filter=status%20eq%20'InProgress'&$skiptoken=a%2Bb%3D%3D"
    pages = {
        1: {"value": [{"id": INST, "status": "InProgress"}], "@odata.nextLink": next_link},
        2: {"value": [{"id": DEF, "status": "InProgress"}]},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=pages[2 if "skiptoken" in str(request.url) else 1])

    graph, seen = make_client(handler, clock)
    instances = [instance async for instance in graph.list_instances(DEF)]
    assert [instance.id for instance in instances] == [INST, DEF]
    assert seen[0].url.params["$filter"] == "status eq 'InProgress'"
    assert str(seen[1].url) == next_link


@pytest.mark.parametrize(
    "link",
    ["https://evil.example.test/v1.0/x", "http://graph.example.test/v1.0/x", 42],
)
async def test_foreign_next_link_rejected(clock: FakeClock, link: object) -> None:
    graph, seen = make_client(
        replies(httpx.Response(200, json={"value": [], "@odata.nextLink": link})), clock
    )
    with pytest.raises(GraphError, match="nextLink"):
        [item async for item in graph.list_definition_ids()]
    assert len(seen) == 1


async def test_repeated_next_link_stops(clock: FakeClock) -> None:
    url = f"{ENDPOINT}/v1.0/identityGovernance/accessReviews/definitions?$skiptoken=same"
    graph, seen = make_client(
        replies(httpx.Response(200, json={"value": [], "@odata.nextLink": url})), clock
    )
    with pytest.raises(GraphError, match="nextLink"):
        [item async for item in graph.list_definition_ids()]
    assert len(seen) == 2


async def test_non_json_success_body_is_error(clock: FakeClock) -> None:
    graph, _ = make_client(replies(httpx.Response(200, content=b"<html/>")), clock)
    with pytest.raises(GraphError, match="not a JSON object"):
        await graph.get_instance(DEF, INST)


async def test_unknown_status_not_in_progress(clock: FakeClock) -> None:
    graph, _ = make_client(
        replies(httpx.Response(200, json={"id": INST, "status": "Paused"})), clock
    )
    instance = await graph.get_instance(DEF, INST)
    assert not instance.is_in_progress
