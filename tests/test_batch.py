"""Unit tests of JSON batching over httpx.MockTransport, with a fake clock."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from review_reminders.errors import (
    GraphNotFoundError,
    GraphPermissionError,
    GraphUnknownOutcomeError,
    TokenError,
)
from review_reminders.graph import GraphClient, instance_path
from review_reminders.settings import Settings
from tests.conftest import FakeClock

ENDPOINT = "https://graph.example.test"
DEF = "11111111-1111-1111-1111-111111111111"

SubHandler = Callable[[dict[str, Any]], dict[str, Any]]


def instance_id(number: int) -> str:
    return f"{number:08d}-0000-4000-8000-000000000000"


def remind_path(number: int) -> str:
    return instance_path(DEF, instance_id(number)) + "/sendReminder"


class StaticToken:
    async def get_token(self) -> str:
        return "token"


class FakeGraph:
    """A $batch endpoint: records each batch and responds to each entry with `sub_handler`."""

    def __init__(self, clock: FakeClock, sub_handler: SubHandler | None = None) -> None:
        self.clock = clock
        self.sub_handler = sub_handler or (lambda request: {"status": 204})
        self.batches: list[list[dict[str, Any]]] = []
        self.batch_times: list[float] = []
        self.direct: list[str] = []
        self.batch_status: list[int] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/$batch"):
            self.direct.append(f"{request.method} {request.url.path}")
            return httpx.Response(200 if request.method == "GET" else 204, json={"id": "x"})
        entries = json.loads(request.content)["requests"]
        self.batches.append(entries)
        self.batch_times.append(self.clock.now)
        if self.batch_status:
            status = self.batch_status.pop(0)
            if status != 200:
                return httpx.Response(status, headers={"Retry-After": "1"})
        responses = [{"id": entry["id"], **self.sub_handler(entry)} for entry in entries]
        return httpx.Response(200, json={"responses": list(reversed(responses))})


def make_client(fake: FakeGraph, *, max_concurrency: int = 4) -> GraphClient:
    settings = Settings(graph_endpoint=ENDPOINT, max_concurrency=max_concurrency)
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake.handle))
    return GraphClient(settings, StaticToken(), http=http, clock=fake.clock)


async def test_21_requests_make_2_batches(clock: FakeClock) -> None:
    fake = FakeGraph(clock)
    graph = make_client(fake, max_concurrency=1)
    await asyncio.gather(*(graph.call("POST", remind_path(n)) for n in range(21)))
    assert [len(batch) for batch in fake.batches] == [20, 1]


async def test_entries_matched_by_id(clock: FakeClock) -> None:
    def handler(entry: dict[str, Any]) -> dict[str, Any]:
        return {"status": 200, "body": {"url": entry["url"]}}

    graph = make_client(FakeGraph(clock, handler))
    paths = [f"/identityGovernance/accessReviews/definitions/{instance_id(n)}" for n in range(5)]
    replies = await asyncio.gather(*(graph.call("GET", path) for path in paths))
    assert [reply.body["url"] for reply in replies] == paths


async def test_throttled_entry_retried_alone(clock: FakeClock) -> None:
    throttled_once: set[str] = set()

    def handler(entry: dict[str, Any]) -> dict[str, Any]:
        if entry["url"] == remind_path(1) and entry["url"] not in throttled_once:
            throttled_once.add(entry["url"])
            return {"status": 429, "headers": {"Retry-After": "3"}, "body": {}}
        return {"status": 204}

    fake = FakeGraph(clock, handler)
    graph = make_client(fake)
    start = clock.now
    await asyncio.gather(*(graph.call("POST", remind_path(n)) for n in range(3)))
    assert len(fake.batches) == 2
    assert [entry["url"] for entry in fake.batches[1]] == [remind_path(1)]
    assert fake.batch_times[1] >= start + 3


async def test_throttle_slows_every_worker(clock: FakeClock) -> None:
    calls = {"count": 0}

    def handler(entry: dict[str, Any]) -> dict[str, Any]:
        calls["count"] += 1
        if calls["count"] == 1:
            return {"status": 429, "headers": {"Retry-After": "5"}}
        return {"status": 204}

    fake = FakeGraph(clock, handler)
    graph = make_client(fake, max_concurrency=1)
    start = clock.now
    await graph.call("POST", remind_path(0))
    # Another worker's request, sent after the 429, waits for the same pause.
    await graph.call("POST", remind_path(1))
    assert all(moment >= start + 5 for moment in fake.batch_times[1:])
    assert graph.pacer.throttled == 1


async def test_whole_batch_throttle_retried(clock: FakeClock) -> None:
    fake = FakeGraph(clock)
    fake.batch_status = [429]
    graph = make_client(fake)
    await asyncio.gather(*(graph.call("POST", remind_path(n)) for n in range(2)))
    assert len(fake.batches) == 2
    assert fake.direct == []


async def test_failed_batch_reads_sent_directly(clock: FakeClock) -> None:
    fake = FakeGraph(clock)
    fake.batch_status = [500]
    graph = make_client(fake)
    read = graph.call("GET", f"/identityGovernance/accessReviews/definitions/{DEF}")
    write = graph.call("POST", remind_path(1))
    results = await asyncio.gather(read, write, return_exceptions=True)
    assert results[0].status == 200  # type: ignore[union-attr]
    assert isinstance(results[1], GraphUnknownOutcomeError)
    assert fake.direct == [f"GET /v1.0/identityGovernance/accessReviews/definitions/{DEF}"]


async def test_rejected_batch_resends_writes(clock: FakeClock) -> None:
    fake = FakeGraph(clock)
    fake.batch_status = [400]
    graph = make_client(fake)
    reply = await graph.call("POST", remind_path(1))
    assert reply.status == 204
    assert fake.direct == [f"POST /v1.0{remind_path(1)}"]


async def test_entry_errors_raised_per_entry(clock: FakeClock) -> None:
    def handler(entry: dict[str, Any]) -> dict[str, Any]:
        if entry["url"] == remind_path(1):
            return {"status": 404, "body": {"error": {"code": "NotFound", "message": "gone"}}}
        if entry["url"] == remind_path(2):
            return {"status": 403, "body": {"error": {"code": "Denied", "message": "no"}}}
        return {"status": 204}

    graph = make_client(FakeGraph(clock, handler))
    results = await asyncio.gather(
        *(graph.call("POST", remind_path(n)) for n in range(3)), return_exceptions=True
    )
    assert results[0].status == 204  # type: ignore[union-attr]
    assert isinstance(results[1], GraphNotFoundError)
    assert isinstance(results[2], GraphPermissionError)


async def test_batched_500_post_not_retried(clock: FakeClock) -> None:
    fake = FakeGraph(clock, lambda entry: {"status": 500})
    graph = make_client(fake)
    with pytest.raises(Exception, match="500"):
        await graph.call("POST", remind_path(1))
    assert len(fake.batches) == 1


async def test_batched_get_500_retried(clock: FakeClock) -> None:
    answers = iter([{"status": 500}, {"status": 200, "body": {"id": "x"}}])
    fake = FakeGraph(clock, lambda entry: next(answers))
    graph = make_client(fake)
    reply = await graph.call("GET", f"/identityGovernance/accessReviews/definitions/{DEF}")
    assert reply.status == 200
    assert len(fake.batches) == 2


async def test_missing_entry_read_resent(clock: FakeClock) -> None:
    fake = FakeGraph(clock)

    def empty(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/$batch"):
            fake.batches.append([])
            return httpx.Response(200, json={"responses": []})
        return fake.handle(request)

    settings = Settings(graph_endpoint=ENDPOINT)
    http = httpx.AsyncClient(transport=httpx.MockTransport(empty))
    graph = GraphClient(settings, StaticToken(), http=http, clock=clock)
    reply = await graph.call("GET", f"/identityGovernance/accessReviews/definitions/{DEF}")
    assert reply.status == 200
    assert len(fake.direct) == 1


async def test_token_error_reaches_every_caller(clock: FakeClock) -> None:
    class FailingToken:
        async def get_token(self) -> str:
            raise TokenError("system-assigned managed identity", "scope", "down")

    settings = Settings(graph_endpoint=ENDPOINT)
    http = httpx.AsyncClient(transport=httpx.MockTransport(FakeGraph(clock).handle))
    graph = GraphClient(settings, FailingToken(), http=http, clock=clock)
    results = await asyncio.gather(
        *(graph.call("POST", remind_path(n)) for n in range(3)), return_exceptions=True
    )
    assert all(isinstance(result, TokenError) for result in results)
