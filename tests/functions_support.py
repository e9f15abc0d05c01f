"""Helpers shared by the end-to-end tests: the registered functions and how to call them.

The SDK validates function names on each `get_functions()` call and fails on the second, so
this module calls it once for the whole session. Test files import what they need from here,
never from each other. The `emulators` fixture starts the Graph and identity emulators and
points the app at Azurite, with tables of its own for each test.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

import function_app
from emulators import Emulators
from emulators.invocation import InvocationContext, QueueOutput
from review_reminders import runtime
from tests.azurite import Azurite
from tests.conftest import FakeClock

ROOT = Path(__file__).resolve().parent.parent
MISSING_ID = "99999999-9999-4999-8999-999999999999"
FUNCTION_KEY = "fk-test-key-that-must-not-be-logged"


FUNCTIONS = {
    function.get_function_name(): function for function in function_app.app.get_functions()
}


def registered(name: str) -> Any:
    assert name in FUNCTIONS, f"function {name} is not registered"
    return FUNCTIONS[name]


def use_storage(monkeypatch: pytest.MonkeyPatch, azurite: Azurite) -> None:
    """Point the app at Azurite, with tables of its own so that no test reads another's ledger."""
    monkeypatch.setenv("AzureWebJobsStorage", azurite.connection_string)
    monkeypatch.setenv("REMINDER_TABLE_PREFIX", "t" + uuid.uuid4().hex[:12])


@pytest.fixture
def emulators(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, azurite: Azurite
) -> Iterator[Emulators]:
    with Emulators.start(page_size=2) as emu:
        for name, value in emu.environ().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("REMINDER_SCHEDULE", "0 0 8 * * 1-5")
        use_storage(monkeypatch, azurite)
        runtime.use_clock(clock)
        yield emu


@pytest.fixture
def captured_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "azure", "msal"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


async def call_http(
    body: object,
    *,
    raw: bytes | None = None,
    content_type: str = "application/json",
    jobs: QueueOutput | None = None,
) -> func.HttpResponse:
    request = func.HttpRequest(
        method="POST",
        url="http://localhost:7071/api/reminders?code=" + FUNCTION_KEY,
        headers={"content-type": content_type, "x-functions-key": FUNCTION_KEY},
        params={"code": FUNCTION_KEY},
        body=raw if raw is not None else json.dumps(body).encode(),
    )
    handler = registered("remind_reviewers").get_user_function()
    output = jobs if jobs is not None else QueueOutput()
    response: func.HttpResponse = await handler(
        request, InvocationContext("remind_reviewers"), output
    )
    return response


async def get_job(job_id: str) -> func.HttpResponse:
    request = func.HttpRequest(
        method="GET",
        url=f"http://localhost:7071/api/reminders/jobs/{job_id}",
        headers={"x-functions-key": FUNCTION_KEY},
        route_params={"jobId": job_id},
        body=b"",
    )
    handler = registered("get_reminder_job").get_user_function()
    response: func.HttpResponse = await handler(request, InvocationContext("get_reminder_job"))
    return response


async def run_job_message(body: str) -> None:
    handler = registered("run_reminder_job").get_user_function()
    message = func.QueueMessage(id=str(uuid.uuid4()), body=body.encode())
    await handler(message, InvocationContext("run_reminder_job"))


async def run_timer(past_due: bool = False) -> None:
    handler = registered("remind_reviewers_on_schedule").get_user_function()
    await handler(
        TimerRequest(past_due=past_due), InvocationContext("remind_reviewers_on_schedule")
    )


def body_of(response: func.HttpResponse) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(response.get_body())
    return data


def graph_calls(emu: Emulators) -> list[str]:
    """List the Graph API calls, batched or direct, leaving out the $batch envelopes."""
    return [
        f"{request.method} {request.path}"
        for request in emu.graph.requests
        if not request.path.endswith("/$batch")
    ]


def posts(emu: Emulators) -> list[str]:
    """List the sendReminder calls Graph received, batched or direct."""
    return [
        request.path
        for request in emu.graph.requests
        if request.method == "POST" and request.path.endswith("/sendReminder")
    ]
