"""End-to-end tests of both triggers, over real sockets, against the local emulators.

Each test drives the functions that `function_app.app` registers, with real `func.HttpRequest`
and `TimerRequest` objects. The app gets its token from the identity emulator through the real
azure-identity credential, and calls the Graph emulator with httpx.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import azure.functions as func
import pytest

from emulators import Emulators
from emulators.sample import (
    FINANCE_APP_DEFINITION_ID,
    FINANCE_NOT_STARTED_INSTANCE_ID,
    GUEST_IN_PROGRESS_INSTANCE_IDS,
    GUEST_REVIEW_DEFINITION_ID,
    PRIVILEGED_COMPLETED_INSTANCE_ID,
    PRIVILEGED_IN_PROGRESS_INSTANCE_ID,
    PRIVILEGED_ROLE_DEFINITION_ID,
    SAMPLE_IN_PROGRESS_INSTANCES,
    SAMPLE_PENDING_INSTANCES,
)
from review_reminders import runtime
from review_reminders.errors import RunFailedError
from tests.azurite import Azurite
from tests.conftest import FakeClock, clean_environ
from tests.functions_support import (
    FUNCTION_KEY,
    FUNCTIONS,
    MISSING_ID,
    ROOT,
    body_of,
    call_http,
    graph_calls,
    posts,
    registered,
    run_timer,
    use_storage,
)

# Registration and import


def test_http_binding_is_keyed_post_route() -> None:
    trigger = registered("remind_reviewers").get_trigger().get_dict_repr()
    assert trigger["route"] == "reminders"
    assert [str(method.value) for method in trigger["methods"]] == ["POST"]
    assert trigger["authLevel"] == func.AuthLevel.FUNCTION


def test_timer_binding_uses_schedule_setting() -> None:
    trigger = registered("remind_reviewers_on_schedule").get_trigger().get_dict_repr()
    assert trigger["schedule"] == "%REMINDER_SCHEDULE%"
    assert trigger["useMonitor"] is True
    assert trigger["runOnStartup"] is False


def test_no_function_is_anonymous() -> None:
    for function in FUNCTIONS.values():
        trigger = function.get_trigger().get_dict_repr()
        assert trigger.get("authLevel", func.AuthLevel.FUNCTION) != func.AuthLevel.ANONYMOUS


def test_import_without_settings_is_cheap() -> None:
    script = (
        "import sys, function_app\n"
        "assert len(function_app.app.get_functions()) == 5\n"
        "heavy = [m for m in ('httpx', 'azure.identity', 'azure.core') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    completed = subprocess.run(  # noqa: S603  # fixed interpreter and script
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**clean_environ(), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr


# HTTP function: success


async def test_definition_reminds_every_in_progress(emulators: Emulators) -> None:
    response = await call_http({"definitionId": GUEST_REVIEW_DEFINITION_ID})
    body = body_of(response)
    assert response.status_code == 200
    assert body["summary"] == {"sent": 5, "skipped": 0, "failed": 0, "wouldSend": 0}
    assert sorted(emulators.graph.reminders) == sorted(
        (GUEST_REVIEW_DEFINITION_ID, instance_id) for instance_id in GUEST_IN_PROGRESS_INSTANCE_IDS
    )
    assert all(result["requestId"] for result in body["results"])


async def test_instance_reminded(emulators: Emulators) -> None:
    response = await call_http(
        {
            "definitionId": PRIVILEGED_ROLE_DEFINITION_ID,
            "instanceId": PRIVILEGED_IN_PROGRESS_INSTANCE_ID,
        }
    )
    assert response.status_code == 200
    assert body_of(response)["results"][0]["outcome"] == "sent"
    assert emulators.graph.reminders == [
        (PRIVILEGED_ROLE_DEFINITION_ID, PRIVILEGED_IN_PROGRESS_INSTANCE_ID)
    ]


async def test_definition_without_active_instances(emulators: Emulators) -> None:
    response = await call_http({"definitionId": FINANCE_APP_DEFINITION_ID})
    assert response.status_code == 200
    assert body_of(response)["summary"] == {"sent": 0, "skipped": 0, "failed": 0, "wouldSend": 0}
    assert posts(emulators) == []


async def test_one_token_request_under_concurrency(emulators: Emulators) -> None:
    await call_http({"definitionId": GUEST_REVIEW_DEFINITION_ID})
    await call_http({"definitionId": PRIVILEGED_ROLE_DEFINITION_ID})
    assert len(emulators.identity.token_requests) == 1


async def test_user_assigned_identity_used(
    emulators: Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    client_id = "44444444-4444-4444-8444-444444444444"
    monkeypatch.setenv("AZURE_CLIENT_ID", client_id)
    response = await call_http({"definitionId": PRIVILEGED_ROLE_DEFINITION_ID})
    assert response.status_code == 200
    assert emulators.identity.token_requests[0].client_id == client_id


# HTTP function: errors


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"instanceId": PRIVILEGED_IN_PROGRESS_INSTANCE_ID},
        {"definitionId": "../../users"},
        {"definitionId": GUEST_REVIEW_DEFINITION_ID, "allDefinitions": True},
        {"definitionId": 7},
    ],
)
async def test_invalid_body_makes_no_calls(emulators: Emulators, body: object) -> None:
    response = await call_http(body)
    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert emulators.graph.requests == []
    assert emulators.identity.token_requests == []


async def test_wrong_content_type_is_415(emulators: Emulators) -> None:
    response = await call_http(None, raw=b"definitionId=x", content_type="text/plain")
    assert response.status_code == 415
    assert emulators.graph.requests == []


async def test_unknown_definition_is_404(emulators: Emulators) -> None:
    response = await call_http({"definitionId": MISSING_ID})
    assert response.status_code == 404
    assert MISSING_ID in body_of(response)["detail"]


async def test_unknown_instance_is_404(emulators: Emulators) -> None:
    response = await call_http(
        {"definitionId": GUEST_REVIEW_DEFINITION_ID, "instanceId": MISSING_ID}
    )
    assert response.status_code == 404
    assert posts(emulators) == []


@pytest.mark.parametrize(
    ("definition_id", "instance_id", "status"),
    [
        (PRIVILEGED_ROLE_DEFINITION_ID, PRIVILEGED_COMPLETED_INSTANCE_ID, "Completed"),
        (FINANCE_APP_DEFINITION_ID, FINANCE_NOT_STARTED_INSTANCE_ID, "NotStarted"),
    ],
)
async def test_inactive_instance_is_409(
    emulators: Emulators, definition_id: str, instance_id: str, status: str
) -> None:
    response = await call_http({"definitionId": definition_id, "instanceId": instance_id})
    assert response.status_code == 409
    assert body_of(response)["instanceStatus"] == status
    assert posts(emulators) == []


async def test_missing_permission_is_502_once(emulators: Emulators) -> None:
    emulators.graph.deny_access()
    response = await call_http({"definitionId": GUEST_REVIEW_DEFINITION_ID})
    detail = body_of(response)["detail"]
    assert response.status_code == 502
    assert "AccessReview.ReadWrite.All" in detail
    assert "24 hours" in detail
    assert body_of(response)["requestId"]
    assert len(graph_calls(emulators)) == 1


async def test_permission_lost_mid_run_stops(emulators: Emulators) -> None:
    emulators.graph.fail("POST", r"/sendReminder$", 403, times=100)
    response = await call_http({"definitionId": GUEST_REVIEW_DEFINITION_ID})
    body = body_of(response)
    assert response.status_code == 502
    assert "AccessReview.ReadWrite.All" in body["detail"]
    assert body["summary"]["sent"] == 0
    # At most one attempt each: a 403 is never retried.
    assert len(posts(emulators)) <= len(GUEST_IN_PROGRESS_INSTANCE_IDS)


async def test_permission_stop_lists_sent(emulators: Emulators) -> None:
    denied = GUEST_IN_PROGRESS_INSTANCE_IDS[4]
    emulators.graph.fail("POST", denied + "/sendReminder$", 403)
    response = await call_http({"definitionId": GUEST_REVIEW_DEFINITION_ID})
    body = body_of(response)
    sent = {r["instanceId"] for r in body["results"] if r["outcome"] == "sent"}
    assert response.status_code == 502
    assert sent == {pair[1] for pair in emulators.graph.reminders}
    assert body["summary"]["sent"] == len(emulators.graph.reminders)


async def test_unknown_client_id_is_502(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock, azurite: Azurite
) -> None:
    known = "55555555-5555-4555-8555-555555555555"
    other = "66666666-6666-4666-8666-666666666666"
    with Emulators.start(known_client_ids=[known]) as emu:
        for name, value in emu.environ().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("AZURE_CLIENT_ID", other)
        use_storage(monkeypatch, azurite)
        runtime.use_clock(clock)
        response = await call_http({"definitionId": GUEST_REVIEW_DEFINITION_ID})
        assert response.status_code == 502
        assert other in body_of(response)["detail"]
        assert emu.graph.requests == []


async def test_invalid_settings_is_500(
    emulators: Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPH_MAX_CONCURRENCY", "lots")
    response = await call_http({"definitionId": GUEST_REVIEW_DEFINITION_ID})
    assert response.status_code == 500
    assert "GRAPH_MAX_CONCURRENCY" in body_of(response)["detail"]
    assert emulators.graph.requests == []


# HTTP function: retries


@pytest.mark.parametrize(
    ("retry_after", "expected_wait"),
    [("2", 2.0), ("0.7", 0.7), (None, None)],
)
async def test_throttled_reminder_retried(
    emulators: Emulators, clock: FakeClock, retry_after: str | None, expected_wait: float | None
) -> None:
    emulators.graph.fail("POST", r"/sendReminder$", 429, retry_after=retry_after)
    response = await call_http(
        {
            "definitionId": PRIVILEGED_ROLE_DEFINITION_ID,
            "instanceId": PRIVILEGED_IN_PROGRESS_INSTANCE_ID,
        }
    )
    assert response.status_code == 200
    assert len(posts(emulators)) == 2
    assert len(clock.sleeps) == 1
    if expected_wait is not None:
        assert clock.sleeps[0] == pytest.approx(expected_wait)


async def test_http_date_retry_after_honoured(emulators: Emulators, clock: FakeClock) -> None:
    from email.utils import formatdate

    emulators.graph.fail(
        "POST", r"/sendReminder$", 503, retry_after=formatdate(clock.time() + 3, usegmt=True)
    )
    response = await call_http(
        {
            "definitionId": PRIVILEGED_ROLE_DEFINITION_ID,
            "instanceId": PRIVILEGED_IN_PROGRESS_INSTANCE_ID,
        }
    )
    assert response.status_code == 200
    assert 2.0 <= clock.sleeps[0] <= 3.0


async def test_throttled_past_budget_is_503(
    emulators: Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPH_RETRY_BUDGET_SECONDS", "10")
    emulators.graph.fail("POST", r"/sendReminder$", 429, retry_after="4", times=10)
    response = await call_http(
        {
            "definitionId": PRIVILEGED_ROLE_DEFINITION_ID,
            "instanceId": PRIVILEGED_IN_PROGRESS_INSTANCE_ID,
        }
    )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "4"
    assert len(posts(emulators)) == 3


async def test_listing_throttled_past_budget_is_503(
    emulators: Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPH_RETRY_BUDGET_SECONDS", "1")
    emulators.graph.fail("GET", r"/instances$", 429, retry_after="5", times=10)
    response = await call_http({"definitionId": GUEST_REVIEW_DEFINITION_ID})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"


async def test_one_failure_among_sends_is_207(emulators: Emulators) -> None:
    emulators.graph.fail("POST", GUEST_IN_PROGRESS_INSTANCE_IDS[2] + "/sendReminder$", 500)
    response = await call_http({"definitionId": GUEST_REVIEW_DEFINITION_ID})
    body = body_of(response)
    failed = [result for result in body["results"] if result["outcome"] == "failed"]
    assert response.status_code == 207
    assert body["summary"] == {"sent": 4, "skipped": 0, "failed": 1, "wouldSend": 0}
    assert failed[0]["instanceId"] == GUEST_IN_PROGRESS_INSTANCE_IDS[2]
    assert failed[0]["requestId"]
    assert "500" in failed[0]["reason"]
    assert len(posts(emulators)) == 5  # the failed POST was not sent again


async def test_gateway_timeout_not_resent(emulators: Emulators) -> None:
    emulators.graph.fail("POST", r"/sendReminder$", 504)
    response = await call_http(
        {
            "definitionId": PRIVILEGED_ROLE_DEFINITION_ID,
            "instanceId": PRIVILEGED_IN_PROGRESS_INSTANCE_ID,
        }
    )
    assert response.status_code == 502
    assert "may or may not have been sent" in body_of(response)["results"][0]["reason"]
    assert len(posts(emulators)) == 1


async def test_html_error_body_handled(emulators: Emulators) -> None:
    emulators.graph.fail(
        "GET", r"/instances/", 400, body="<html>Bad</html>", content_type="text/html"
    )
    response = await call_http(
        {
            "definitionId": PRIVILEGED_ROLE_DEFINITION_ID,
            "instanceId": PRIVILEGED_IN_PROGRESS_INSTANCE_ID,
        }
    )
    assert response.status_code == 502
    assert body_of(response)["type"].endswith("graph-error")


# Secrets


async def test_secrets_absent_from_logs_and_bodies(
    emulators: Emulators, captured_logs: pytest.LogCaptureFixture
) -> None:
    responses = [
        await call_http({"definitionId": GUEST_REVIEW_DEFINITION_ID}),
        await call_http({"definitionId": "bad"}),
    ]
    emulators.graph.deny_access()
    responses.append(await call_http({"definitionId": GUEST_REVIEW_DEFINITION_ID}))

    secrets = [*emulators.identity.issued_tokens, emulators.identity_header, FUNCTION_KEY]
    texts = [captured_logs.text, *(r.get_body().decode() for r in responses)]
    assert emulators.identity.issued_tokens
    for secret in secrets:
        for text in texts:
            assert secret not in text


# Timer function


async def test_timer_reminds_all_definitions(
    emulators: Emulators, captured_logs: pytest.LogCaptureFixture
) -> None:
    await run_timer()
    assert sorted(emulators.graph.reminders) == sorted(SAMPLE_PENDING_INSTANCES)
    summary = [r.getMessage() for r in captured_logs.records if "run done" in r.getMessage()]
    skipped = len(SAMPLE_IN_PROGRESS_INSTANCES) - len(SAMPLE_PENDING_INSTANCES)
    assert summary == [
        f"Scheduled reminder run done: {len(SAMPLE_PENDING_INSTANCES)} sent, 0 would send, "
        f"{skipped} skipped, 0 failed"
    ]


async def test_timer_covers_configured_definitions(
    emulators: Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMINDER_DEFINITION_IDS", PRIVILEGED_ROLE_DEFINITION_ID)
    await run_timer()
    assert emulators.graph.reminders == [
        (PRIVILEGED_ROLE_DEFINITION_ID, PRIVILEGED_IN_PROGRESS_INSTANCE_ID)
    ]


async def test_timer_past_due_runs_once(
    emulators: Emulators, captured_logs: pytest.LogCaptureFixture
) -> None:
    await run_timer(past_due=True)
    assert len(emulators.graph.reminders) == len(SAMPLE_PENDING_INSTANCES)
    assert "(past due)" in captured_logs.text


async def test_timer_raises_after_trying_all(
    emulators: Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMINDER_DEFINITION_IDS", f"{MISSING_ID},{GUEST_REVIEW_DEFINITION_ID}")
    emulators.graph.fail("POST", GUEST_IN_PROGRESS_INSTANCE_IDS[0] + "/sendReminder$", 500)
    with pytest.raises(RunFailedError) as caught:
        await run_timer()
    assert len(emulators.graph.reminders) == 4
    assert len(caught.value.failed) == 2
    assert f"{MISSING_ID}/*" in caught.value.failed


async def test_timer_permission_error_raises(emulators: Emulators) -> None:
    emulators.graph.deny_access()
    with pytest.raises(Exception, match=r"AccessReview\.ReadWrite\.All"):
        await run_timer()
    assert len(graph_calls(emulators)) == 1


def test_demo_environment_is_clean() -> None:
    assert not any(name.startswith(("AZURE_", "MSI_")) for name in os.environ)


def test_host_json_bundle_and_queue() -> None:
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    queues = host["extensions"]["queues"]
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"
    assert queues["batchSize"] == 1
    assert queues["newBatchThreshold"] == 0


def test_stale_job_outlasts_every_delivery() -> None:
    from review_reminders.service import JOB_STALE_AFTER_S

    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    hours, minutes, seconds = (int(part) for part in host["functionTimeout"].split(":"))
    timeout_s = hours * 3600 + minutes * 60 + seconds
    assert host["extensions"]["queues"]["maxDequeueCount"] * timeout_s < JOB_STALE_AFTER_S
