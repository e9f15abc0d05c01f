"""End-to-end tests of target selection, the reminder ledger and long jobs, over real sockets.

They drive the registered functions against the Graph and identity emulators and Azurite,
using the helpers in functions_support.py.
"""

from __future__ import annotations

import json

import pytest

from emulators import Emulators
from emulators.sample import (
    GUEST_IN_PROGRESS_INSTANCE_IDS,
    GUEST_REVIEW_DEFINITION_ID,
    MULTI_STAGE_DEFINITION_ID,
    MULTI_STAGE_IN_PROGRESS_INSTANCE_ID,
    PRIVILEGED_IN_PROGRESS_INSTANCE_ID,
    PRIVILEGED_ROLE_DEFINITION_ID,
    SALES_APP_DECIDED_INSTANCE_ID,
    SALES_APP_DEFINITION_ID,
    SAMPLE_ENDING_WITHIN_7_DAYS,
    SAMPLE_PENDING_INSTANCES,
)
from tests.azurite import Azurite
from tests.conftest import FakeClock
from tests.functions_support import (
    QueueOutput,
    body_of,
    call_http,
    get_job,
    posts,
    run_job_message,
    run_timer,
)

PRIVILEGED = {
    "definitionId": PRIVILEGED_ROLE_DEFINITION_ID,
    "instanceId": PRIVILEGED_IN_PROGRESS_INSTANCE_ID,
}


def outcomes(response_body: dict[str, object]) -> dict[str, str]:
    results = response_body["results"]
    assert isinstance(results, list)
    return {item["instanceId"]: item["outcome"] for item in results}


# Selection


async def test_dry_run_sends_nothing(emulators: Emulators) -> None:
    response = await call_http({"definitionId": GUEST_REVIEW_DEFINITION_ID, "dryRun": True})
    body = body_of(response)
    assert response.status_code == 200
    assert body["summary"]["wouldSend"] == 5
    assert posts(emulators) == []


async def test_ending_within_days_filters(emulators: Emulators) -> None:
    response = await call_http({"allDefinitions": True, "endingWithinDays": 7, "dryRun": True})
    assert response.status_code == 202  # the whole tenant always runs from the queue


async def test_ending_within_days_on_definition(emulators: Emulators) -> None:
    response = await call_http({"definitionId": GUEST_REVIEW_DEFINITION_ID, "endingWithinDays": 7})
    body = body_of(response)
    expected = {i for d, i in SAMPLE_ENDING_WITHIN_7_DAYS if d == GUEST_REVIEW_DEFINITION_ID}
    sent = {instance for instance, outcome in outcomes(body).items() if outcome == "sent"}
    assert sent == expected
    assert body["summary"]["skipped"] == 5 - len(expected)
    assert "day(s) from now" in json.dumps(body)


async def test_decided_instance_skipped(emulators: Emulators) -> None:
    response = await call_http({"definitionId": SALES_APP_DEFINITION_ID})
    body = body_of(response)
    assert outcomes(body) == {SALES_APP_DECIDED_INSTANCE_ID: "skipped"}
    assert "no pending decisions" in body["results"][0]["reason"]
    assert posts(emulators) == []


async def test_multi_stage_pending_reminded(emulators: Emulators) -> None:
    response = await call_http({"definitionId": MULTI_STAGE_DEFINITION_ID})
    assert outcomes(body_of(response)) == {MULTI_STAGE_IN_PROGRESS_INSTANCE_ID: "sent"}
    stage_reads = [r.path for r in emulators.graph.requests if "/stages" in r.path]
    assert stage_reads


async def test_pending_check_can_be_off(
    emulators: Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMINDER_PENDING_CHECK", "false")
    response = await call_http({"definitionId": SALES_APP_DEFINITION_ID})
    assert outcomes(body_of(response)) == {SALES_APP_DECIDED_INSTANCE_ID: "sent"}


async def test_results_carry_names_and_dates(emulators: Emulators) -> None:
    body = body_of(await call_http(PRIVILEGED))
    result = body["results"][0]
    assert result["definitionDisplayName"] == "Privileged role review"
    assert result["instanceEndDateTime"].endswith("Z")


# Ledger


async def test_same_request_twice_sends_once(emulators: Emulators) -> None:
    first = body_of(await call_http(PRIVILEGED))
    second = body_of(await call_http(PRIVILEGED))
    assert first["results"][0]["outcome"] == "sent"
    assert second["results"][0]["outcome"] == "skipped"
    assert second["results"][0]["reason"].startswith("cooldown")
    assert len(posts(emulators)) == 1


async def test_force_overrides_cooldown(emulators: Emulators) -> None:
    await call_http(PRIVILEGED)
    forced = body_of(await call_http({**PRIVILEGED, "force": True}))
    assert forced["results"][0]["outcome"] == "sent"
    assert len(posts(emulators)) == 2


async def test_zero_cooldown_sends_again(
    emulators: Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REMINDER_COOLDOWN_HOURS", "0")
    await call_http(PRIVILEGED)
    await call_http(PRIVILEGED)
    assert len(posts(emulators)) == 2


async def test_cooldown_ends(emulators: Emulators, clock: FakeClock) -> None:
    await call_http(PRIVILEGED)
    clock.now += 21 * 3600
    again = body_of(await call_http(PRIVILEGED))
    assert again["results"][0]["outcome"] == "sent"


async def test_timer_after_http_skips_reminded(emulators: Emulators) -> None:
    await call_http({"definitionId": GUEST_REVIEW_DEFINITION_ID})
    await run_timer()
    assert len(emulators.graph.reminders) == len(SAMPLE_PENDING_INSTANCES)


async def test_dry_run_reports_cooldown(emulators: Emulators) -> None:
    await call_http(PRIVILEGED)
    dry = body_of(await call_http({**PRIVILEGED, "dryRun": True}))
    assert dry["results"][0]["reason"].startswith("cooldown")


async def test_ledger_down_sends_nothing(emulators: Emulators, azurite: Azurite) -> None:
    with azurite.stopped():
        response = await call_http(PRIVILEGED)
    body = body_of(response)
    assert response.status_code == 503
    assert body["type"].endswith("ledger-unavailable")
    assert response.headers["Retry-After"]
    assert posts(emulators) == []


async def test_missing_storage_setting_is_500(
    emulators: Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AzureWebJobsStorage")
    response = await call_http(PRIVILEGED)
    assert response.status_code == 500
    assert "AzureWebJobsStorage" in body_of(response)["detail"]
    assert posts(emulators) == []


# Long jobs


@pytest.fixture
def small_sync_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    # 5 s at the estimate of 0.5 s a target: more than 10 targets go to the queue.
    monkeypatch.setenv("REMINDER_SYNC_BUDGET_SECONDS", "5")


async def test_all_definitions_accepted_as_job(emulators: Emulators) -> None:
    jobs = QueueOutput()
    response = await call_http({"allDefinitions": True}, jobs=jobs)
    body = body_of(response)
    assert response.status_code == 202
    assert response.headers["Location"].endswith(
        f"/api/reminders/jobs/{body['jobId']}?code=" + "fk-test-key-that-must-not-be-logged"
    )
    assert response.headers["Retry-After"] == "10"
    assert json.loads(jobs.get()) == {"jobId": body["jobId"]}
    assert posts(emulators) == []


async def test_job_polled_until_done(emulators: Emulators) -> None:
    jobs = QueueOutput()
    accepted = body_of(await call_http({"allDefinitions": True}, jobs=jobs))
    running = await get_job(accepted["jobId"])
    assert running.status_code == 202

    await run_job_message(jobs.get())
    done = await get_job(accepted["jobId"])
    body = body_of(done)
    assert done.status_code == 200
    assert body["status"] == "succeeded"
    assert body["summary"]["sent"] == len(SAMPLE_PENDING_INSTANCES)
    assert sorted(emulators.graph.reminders) == sorted(SAMPLE_PENDING_INSTANCES)


async def test_job_message_twice_sends_once(emulators: Emulators) -> None:
    jobs = QueueOutput()
    await call_http({"allDefinitions": True}, jobs=jobs)
    await run_job_message(jobs.get())
    await run_job_message(jobs.get())
    assert len(emulators.graph.reminders) == len(SAMPLE_PENDING_INSTANCES)


async def test_large_definition_goes_to_queue(
    emulators: Emulators, small_sync_budget: None
) -> None:
    for _ in range(12):
        instance_id = emulators.graph.add_instance(GUEST_REVIEW_DEFINITION_ID, "InProgress")
        emulators.graph.add_decision(GUEST_REVIEW_DEFINITION_ID, instance_id)
    response = await call_http({"definitionId": GUEST_REVIEW_DEFINITION_ID})
    assert response.status_code == 202
    assert posts(emulators) == []


async def test_small_definition_answered_at_once(
    emulators: Emulators, small_sync_budget: None
) -> None:
    response = await call_http({"definitionId": GUEST_REVIEW_DEFINITION_ID})
    assert response.status_code == 200
    assert len(posts(emulators)) == len(GUEST_IN_PROGRESS_INSTANCE_IDS)


async def test_job_permission_error_completes_failed(emulators: Emulators) -> None:
    jobs = QueueOutput()
    accepted = body_of(await call_http({"allDefinitions": True}, jobs=jobs))
    emulators.graph.deny_access()
    await run_job_message(jobs.get())
    body = body_of(await get_job(accepted["jobId"]))
    assert body["status"] == "failed"
    assert "AccessReview.ReadWrite.All" in body["error"]["detail"]
    assert body["summary"]["sent"] == 0


@pytest.mark.parametrize("job_id", ["not-a-job", "../x", "00000000-0000-0000-0000-00000000000g"])
async def test_invalid_job_id_is_400(emulators: Emulators, job_id: str) -> None:
    assert (await get_job(job_id)).status_code == 400


async def test_unknown_job_is_404(emulators: Emulators) -> None:
    response = await get_job("0b7c5a3e-2f4d-4e6a-9c1b-8d2e7f6a5b4c")
    assert response.status_code == 404


async def test_stale_job_reported_failed(emulators: Emulators, clock: FakeClock) -> None:
    jobs = QueueOutput()
    accepted = body_of(await call_http({"allDefinitions": True}, jobs=jobs))
    clock.now += 41 * 60
    body = body_of(await get_job(accepted["jobId"]))
    assert body["status"] == "failed"
    assert body["error"]["type"].endswith("job-lost")
    assert body["results"] == []


async def test_malformed_job_message_dropped(emulators: Emulators) -> None:
    await run_job_message("not json")
    assert emulators.graph.requests == []


async def test_unknown_job_message_ignored(emulators: Emulators) -> None:
    await run_job_message(json.dumps({"jobId": "0b7c5a3e-2f4d-4e6a-9c1b-8d2e7f6a5b4c"}))
    assert emulators.graph.requests == []


async def test_throttled_job_keeps_result_shape(
    emulators: Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPH_RETRY_BUDGET_SECONDS", "0")
    jobs = QueueOutput()
    accepted = body_of(await call_http({"allDefinitions": True}, jobs=jobs))
    emulators.graph.fail("GET", r"/definitions$", 429, retry_after="5")
    await run_job_message(jobs.get())
    body = body_of(await get_job(accepted["jobId"]))
    assert body["status"] == "failed"
    assert body["results"] == []
    assert body["summary"]["sent"] == 0
    assert body["error"]["status"] == 503
