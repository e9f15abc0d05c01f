from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from emulators import Emulators
from emulators.sample import (
    GUEST_IN_PROGRESS_INSTANCE_IDS,
    GUEST_REVIEW_DEFINITION_ID,
    PRIVILEGED_IN_PROGRESS_INSTANCE_ID,
    PRIVILEGED_ROLE_DEFINITION_ID,
    SAMPLE_IN_PROGRESS_INSTANCES,
    SAMPLE_PENDING_INSTANCES,
)
from review_reminders import jobs
from review_reminders.auth import ManagedIdentityTokenProvider
from review_reminders.errors import GraphPermissionError
from review_reminders.graph import GraphClient
from review_reminders.results import Outcome
from review_reminders.settings import Settings
from tests.conftest import FakeClock

MISSING_ID = "99999999-9999-4999-8999-999999999999"


@pytest.fixture
async def emulated(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> AsyncIterator[tuple[Emulators, GraphClient]]:
    with Emulators.start(page_size=2) as emu:
        for name, value in emu.environ().items():
            monkeypatch.setenv(name, value)
        settings = Settings(graph_endpoint=emu.graph_endpoint, max_concurrency=2, timeout_s=5)
        tokens = ManagedIdentityTokenProvider(settings.graph_scope, clock=clock)
        graph = GraphClient(settings, tokens, clock=clock)
        yield emu, graph
        await graph.aclose()
        await tokens.close()


async def test_definitions_all_reminded(emulated: tuple[Emulators, GraphClient]) -> None:
    emu, graph = emulated
    results = await jobs.remind_definitions(graph)
    assert sorted(emu.graph.reminders) == sorted(SAMPLE_PENDING_INSTANCES)
    assert {result.outcome for result in results} == {Outcome.SENT, Outcome.SKIPPED}
    assert len(results) == len(SAMPLE_IN_PROGRESS_INSTANCES)


async def test_missing_definition_isolated(emulated: tuple[Emulators, GraphClient]) -> None:
    emu, graph = emulated
    results = await jobs.remind_definitions(graph, [MISSING_ID, PRIVILEGED_ROLE_DEFINITION_ID])
    failed = [result for result in results if result.outcome is Outcome.FAILED]
    assert [(result.definition_id, result.instance_id) for result in failed] == [(MISSING_ID, None)]
    assert emu.graph.reminders == [
        (PRIVILEGED_ROLE_DEFINITION_ID, PRIVILEGED_IN_PROGRESS_INSTANCE_ID)
    ]


async def test_permission_error_stops_job(emulated: tuple[Emulators, GraphClient]) -> None:
    emu, graph = emulated
    emu.graph.fail("GET", r"/definitions$", 403)
    with pytest.raises(GraphPermissionError):
        await jobs.remind_definitions(graph)
    assert emu.graph.reminders == []


async def test_instance_status_rechecked(emulated: tuple[Emulators, GraphClient]) -> None:
    emu, graph = emulated
    emu.graph.set_status(GUEST_REVIEW_DEFINITION_ID, GUEST_IN_PROGRESS_INSTANCE_IDS[0], "Completed")
    results = await jobs.remind_definition(graph, GUEST_REVIEW_DEFINITION_ID)
    assert len(results) == 4
    assert len(emu.graph.reminders) == 4


async def test_held_post_reported_not_resent(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    with Emulators.start() as emu:
        for name, value in emu.environ().items():
            monkeypatch.setenv(name, value)
        # A 0.2 s timeout against a response the emulator never sends: no sleep involved.
        settings = Settings(graph_endpoint=emu.graph_endpoint, timeout_s=0.2)
        tokens = ManagedIdentityTokenProvider(settings.graph_scope, clock=clock)
        graph = GraphClient(settings, tokens, clock=clock)
        emu.graph.fail("POST", r"/sendReminder$", 204, hold=True)
        try:
            result = await jobs.remind_instance(
                graph, PRIVILEGED_ROLE_DEFINITION_ID, PRIVILEGED_IN_PROGRESS_INSTANCE_ID
            )
        finally:
            emu.graph.release()
            await graph.aclose()
        posts = [r for r in emu.graph.requests if r.path.endswith("/sendReminder")]
        assert result.outcome is Outcome.FAILED
        assert "may or may not have been sent" in (result.reason or "")
        assert result.request_id
        assert len(posts) <= 1


class ConcurrencyProbe:
    def __init__(self) -> None:
        self.in_flight = 0
        self.peak = 0

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(0)  # yields to the other tasks; no time passes
        await asyncio.sleep(0)
        self.in_flight -= 1
        if request.method == "POST":
            return httpx.Response(204)
        items = [
            {"id": f"{n:08d}-0000-4000-8000-000000000000", "status": "InProgress"}
            for n in range(40)
        ]
        return httpx.Response(200, json={"value": items})


class StaticToken:
    async def get_token(self) -> str:
        return "token"


async def test_requests_in_flight_bounded(clock: FakeClock) -> None:
    probe = ConcurrencyProbe()
    settings = Settings(graph_endpoint="https://graph.example.test", max_concurrency=3)
    http = httpx.AsyncClient(transport=httpx.MockTransport(probe.handle))
    graph = GraphClient(settings, StaticToken(), http=http, clock=clock)
    results = await jobs.remind_definition(graph, GUEST_REVIEW_DEFINITION_ID)
    assert len(results) == 40
    assert probe.peak == 3
