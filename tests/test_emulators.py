"""Tests of the local Graph and managed identity emulators, over real loopback sockets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ManagedIdentityCredential

from emulators import Emulators, Fault, GraphEmulator, IdentityEmulator
from emulators.sample import (
    CONTRACTOR_DEFINITION_ID,
    FINANCE_APP_DEFINITION_ID,
    FINANCE_NOT_STARTED_INSTANCE_ID,
    GUEST_APPLIED_INSTANCE_ID,
    GUEST_IN_PROGRESS_INSTANCE_IDS,
    GUEST_REVIEW_DEFINITION_ID,
    MULTI_STAGE_COMPLETED_STAGE_ID,
    MULTI_STAGE_DEFINITION_ID,
    MULTI_STAGE_IN_PROGRESS_INSTANCE_ID,
    MULTI_STAGE_IN_PROGRESS_STAGE_ID,
    PRIVILEGED_COMPLETED_INSTANCE_ID,
    PRIVILEGED_IN_PROGRESS_INSTANCE_ID,
    PRIVILEGED_ROLE_DEFINITION_ID,
    SALES_APP_DECIDED_INSTANCE_ID,
    SALES_APP_DEFINITION_ID,
    SAMPLE_ENDING_WITHIN_7_DAYS,
    SAMPLE_IN_PROGRESS_INSTANCES,
    SAMPLE_PENDING_INSTANCES,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFINITIONS = "/v1.0/identityGovernance/accessReviews/definitions"
KNOWN_CLIENT_ID = "0c1d2e3f-4a5b-4c6d-8e7f-901234567890"
UNKNOWN_CLIENT_ID = "ffffffff-4a5b-4c6d-8e7f-901234567890"
ENVIRONMENT_PREFIXES = ("AZURE_", "MSI_", "IDENTITY_", "IMDS_", "MSAL_")
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def instance_path(definition_id: str, instance_id: str) -> str:
    return f"{DEFINITIONS}/{definition_id}/instances/{instance_id}"


def decisions_path(definition_id: str, instance_id: str) -> str:
    return instance_path(definition_id, instance_id) + "/decisions"


def stages_path(definition_id: str, instance_id: str) -> str:
    return instance_path(definition_id, instance_id) + "/stages"


MULTI_STAGE_STAGES = stages_path(MULTI_STAGE_DEFINITION_ID, MULTI_STAGE_IN_PROGRESS_INSTANCE_ID)
NOT_REVIEWED_FILTER = {"$filter": "decision eq 'NotReviewed'"}


def reminder_path(definition_id: str, instance_id: str) -> str:
    return instance_path(definition_id, instance_id) + "/sendReminder"


def fetch_token(client: httpx.Client, emu: Emulators, resource: str | None = None) -> str:
    response = client.get(
        emu.identity_endpoint,
        params={"api-version": "2019-08-01", "resource": resource or emu.graph_endpoint},
        headers={"X-IDENTITY-HEADER": emu.identity_header},
    )
    assert response.status_code == 200
    token: str = response.json()["access_token"]
    return token


def collect_pages(client: httpx.Client, url: str, **params: str) -> list[dict[str, Any]]:
    """Follow @odata.nextLink to the end and return the pages."""
    pages: list[dict[str, Any]] = []
    response = client.get(url, params=params)
    while True:
        assert response.status_code == 200
        page: dict[str, Any] = response.json()
        pages.append(page)
        next_link = page.get("@odata.nextLink")
        if next_link is None:
            return pages
        assert len(pages) < 20, "paging does not end"
        response = client.get(next_link)


@pytest.fixture
def emu() -> Iterator[Emulators]:
    with Emulators.start(page_size=2, known_client_ids=[KNOWN_CLIENT_ID]) as running:
        yield running


@pytest.fixture
def anonymous(emu: Emulators) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.graph_endpoint, trust_env=False, timeout=5.0) as client:
        yield client


@pytest.fixture
def graph(emu: Emulators, anonymous: httpx.Client) -> Iterator[httpx.Client]:
    token = fetch_token(anonymous, emu)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(
        base_url=emu.graph_endpoint, headers=headers, trust_env=False, timeout=5.0
    ) as client:
        yield client


@pytest.fixture
def managed_identity_env(emu: Emulators, monkeypatch: pytest.MonkeyPatch) -> None:
    """Leave only the App Service variables, so azure-identity never probes IMDS."""
    for name in list(os.environ):
        if name.upper().startswith(ENVIRONMENT_PREFIXES) or name.upper() in PROXY_VARIABLES:
            monkeypatch.delenv(name)
    monkeypatch.setenv("IDENTITY_ENDPOINT", emu.identity_endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", emu.identity_header)


# Graph collections and entities


def test_definitions_paging_reaches_end(graph: httpx.Client, emu: Emulators) -> None:
    pages = collect_pages(graph, DEFINITIONS)

    ids = [item["id"] for page in pages for item in page["value"]]
    assert ids == [
        GUEST_REVIEW_DEFINITION_ID,
        PRIVILEGED_ROLE_DEFINITION_ID,
        FINANCE_APP_DEFINITION_ID,
        CONTRACTOR_DEFINITION_ID,
        SALES_APP_DEFINITION_ID,
        MULTI_STAGE_DEFINITION_ID,
    ]
    assert len(pages) == 3
    assert pages[0]["@odata.nextLink"].startswith(emu.graph_endpoint + DEFINITIONS + "?")
    assert "$skiptoken=" in pages[0]["@odata.nextLink"]


def test_instances_paging_keeps_filter(graph: httpx.Client) -> None:
    url = f"{DEFINITIONS}/{GUEST_REVIEW_DEFINITION_ID}/instances"
    pages = collect_pages(graph, url, **{"$filter": "status eq 'InProgress'"})

    ids = [item["id"] for page in pages for item in page["value"]]
    assert ids == list(GUEST_IN_PROGRESS_INSTANCE_IDS)
    assert len(pages) == 3
    assert "$filter=" in pages[0]["@odata.nextLink"]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("Applied", [GUEST_APPLIED_INSTANCE_ID]),
        ("Completed", []),
        ("NotStarted", []),
    ],
)
def test_instances_filter_by_status(graph: httpx.Client, status: str, expected: list[str]) -> None:
    url = f"{DEFINITIONS}/{GUEST_REVIEW_DEFINITION_ID}/instances"
    response = graph.get(url, params={"$filter": f"status eq '{status}'"})

    assert response.status_code == 200
    assert [item["id"] for item in response.json()["value"]] == expected


@pytest.mark.parametrize(
    "expression",
    ["status eq InProgress", "startswith(status, 'In')", "status ne 'InProgress'", ""],
)
def test_instances_unsupported_filter_rejected(graph: httpx.Client, expression: str) -> None:
    url = f"{DEFINITIONS}/{GUEST_REVIEW_DEFINITION_ID}/instances"
    response = graph.get(url, params={"$filter": expression})

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"


def test_instance_has_graph_fields(graph: httpx.Client) -> None:
    response = graph.get(
        instance_path(PRIVILEGED_ROLE_DEFINITION_ID, PRIVILEGED_IN_PROGRESS_INSTANCE_ID)
    )

    body = response.json()
    assert response.status_code == 200
    assert body["id"] == PRIVILEGED_IN_PROGRESS_INSTANCE_ID
    assert body["status"] == "InProgress"
    assert body["startDateTime"].endswith("Z")
    assert body["endDateTime"].endswith("Z")
    assert isinstance(body["scope"], dict)


def test_definition_has_graph_fields(graph: httpx.Client) -> None:
    response = graph.get(f"{DEFINITIONS}/{FINANCE_APP_DEFINITION_ID}")

    body = response.json()
    assert response.status_code == 200
    assert body["displayName"] == "Finance app access"
    assert body["status"] == "NotStarted"


def test_definition_without_instances_lists_none(graph: httpx.Client) -> None:
    response = graph.get(f"{DEFINITIONS}/{CONTRACTOR_DEFINITION_ID}/instances")

    assert response.status_code == 200
    assert response.json()["value"] == []
    assert "@odata.nextLink" not in response.json()


def test_missing_definition_returns_envelope(graph: httpx.Client) -> None:
    missing = "00000000-0000-4000-8000-00000000dead"
    response = graph.get(f"{DEFINITIONS}/{missing}", headers={"client-request-id": "trace-1"})

    error = response.json()["error"]
    assert response.status_code == 404
    assert error["code"] == "NotFound"
    assert missing in error["message"]
    assert error["innerError"]["request-id"] == response.headers["request-id"]
    assert error["innerError"]["client-request-id"] == "trace-1"
    assert response.headers["client-request-id"] == "trace-1"


def test_missing_instance_returns_404(graph: httpx.Client) -> None:
    missing = "00000000-0000-4000-8000-00000000beef"
    response = graph.get(instance_path(GUEST_REVIEW_DEFINITION_ID, missing))

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NotFound"


def test_instances_of_missing_definition_404(graph: httpx.Client) -> None:
    response = graph.get(f"{DEFINITIONS}/00000000-0000-4000-8000-00000000dead/instances")

    assert response.status_code == 404


def test_unknown_path_returns_400(graph: httpx.Client) -> None:
    response = graph.get("/v1.0/identityGovernance/somethingElse")

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"


def test_other_api_version_returns_404(graph: httpx.Client) -> None:
    response = graph.get("/beta/identityGovernance/accessReviews/definitions")

    assert response.status_code == 404


def test_wrong_method_returns_405(graph: httpx.Client) -> None:
    response = graph.delete(DEFINITIONS)

    assert response.status_code == 405
    assert response.headers["allow"] == "GET"


def test_unsupported_query_option_rejected(graph: httpx.Client) -> None:
    response = graph.get(DEFINITIONS, params={"$expand": "instances"})

    assert response.status_code == 400
    assert "$expand" in response.json()["error"]["message"]


def test_select_limits_properties(graph: httpx.Client) -> None:
    response = graph.get(DEFINITIONS, params={"$select": "displayName"})

    first = response.json()["value"][0]
    assert response.status_code == 200
    assert set(first) == {"id", "displayName"}


def test_top_overrides_page_size(graph: httpx.Client) -> None:
    response = graph.get(DEFINITIONS, params={"$top": "3"})

    assert len(response.json()["value"]) == 3


def test_invalid_skiptoken_rejected(graph: httpx.Client) -> None:
    response = graph.get(DEFINITIONS, params={"$skiptoken": "not-a-token"})

    assert response.status_code == 400


def test_every_response_has_request_id(graph: httpx.Client) -> None:
    first = graph.get(DEFINITIONS)
    second = graph.get(f"{DEFINITIONS}/00000000-0000-4000-8000-00000000dead")

    assert first.headers["request-id"]
    assert second.headers["request-id"]
    assert first.headers["request-id"] != second.headers["request-id"]
    assert "client-request-id" not in first.headers


def test_empty_tenant_without_seed() -> None:
    with Emulators.start(seed=False) as emu, httpx.Client(trust_env=False) as client:
        token = fetch_token(client, emu)
        response = client.get(
            emu.graph_endpoint + DEFINITIONS, headers={"Authorization": f"Bearer {token}"}
        )

    assert response.status_code == 200
    assert response.json()["value"] == []


def test_add_instance_validates_input() -> None:
    graph = GraphEmulator()
    definition_id = graph.add_definition("Test review")

    with pytest.raises(ValueError, match="Unknown review status"):
        graph.add_instance(definition_id, "Running")
    with pytest.raises(KeyError):
        graph.add_instance("00000000-0000-4000-8000-000000000000", "InProgress")
    with pytest.raises(ValueError, match="time zone"):
        graph.add_instance(definition_id, "InProgress", start=datetime(2025, 1, 1))


def test_ids_are_lowercase_guids() -> None:
    graph = GraphEmulator()
    definition_id = graph.add_definition(
        "Test", definition_id="A1B2C3D4-0000-4000-8000-00000000000A"
    )
    instance_id = graph.add_instance(definition_id, "InProgress")

    assert definition_id == "a1b2c3d4-0000-4000-8000-00000000000a"
    assert instance_id == instance_id.lower()


# Decisions and stages


def values(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.json()["value"]
    return items


def test_decisions_paging_reaches_end(graph: httpx.Client) -> None:
    url = decisions_path(GUEST_REVIEW_DEFINITION_ID, GUEST_IN_PROGRESS_INSTANCE_IDS[0])
    pages = collect_pages(graph, url)

    decisions = [item["decision"] for page in pages for item in page["value"]]
    assert decisions == ["NotReviewed", "Approve", "NotReviewed"]
    assert len(pages) == 2


def test_decisions_filter_not_reviewed(graph: httpx.Client) -> None:
    url = decisions_path(GUEST_REVIEW_DEFINITION_ID, GUEST_IN_PROGRESS_INSTANCE_IDS[3])
    items = values(graph.get(url, params=NOT_REVIEWED_FILTER))

    assert [item["decision"] for item in items] == ["NotReviewed"]


def test_decisions_top_keeps_filter(graph: httpx.Client) -> None:
    url = decisions_path(GUEST_REVIEW_DEFINITION_ID, GUEST_IN_PROGRESS_INSTANCE_IDS[0])
    response = graph.get(url, params={**NOT_REVIEWED_FILTER, "$top": "1"})

    assert len(values(response)) == 1
    assert "$filter=" in response.json()["@odata.nextLink"]
    assert "$top=1" in response.json()["@odata.nextLink"]


@pytest.mark.parametrize("top", ["0", "-1", "abc", "1000"])
def test_decisions_invalid_top_rejected(graph: httpx.Client, top: str) -> None:
    url = decisions_path(GUEST_REVIEW_DEFINITION_ID, GUEST_IN_PROGRESS_INSTANCE_IDS[0])
    response = graph.get(url, params={"$top": top})

    assert response.status_code == 400


@pytest.mark.parametrize(
    "expression", ["status eq 'InProgress'", "decision ne 'Approve'", "decision eq Approve"]
)
def test_decisions_unsupported_filter_rejected(graph: httpx.Client, expression: str) -> None:
    url = decisions_path(GUEST_REVIEW_DEFINITION_ID, GUEST_IN_PROGRESS_INSTANCE_IDS[0])
    response = graph.get(url, params={"$filter": expression})

    assert response.status_code == 400
    assert "decision eq" in response.json()["error"]["message"]


def test_decision_has_graph_fields(graph: httpx.Client) -> None:
    url = decisions_path(GUEST_REVIEW_DEFINITION_ID, GUEST_IN_PROGRESS_INSTANCE_IDS[1])
    approved, pending = values(graph.get(url))

    assert approved["decision"] == "Approve"
    assert approved["accessReviewId"] == GUEST_IN_PROGRESS_INSTANCE_IDS[1]
    assert approved["reviewedBy"]["id"] != "00000000-0000-0000-0000-000000000000"
    assert approved["reviewedDateTime"].endswith("Z")
    assert pending["decision"] == "NotReviewed"
    assert pending["reviewedBy"]["id"] == "00000000-0000-0000-0000-000000000000"
    assert pending["reviewedDateTime"] is None
    assert pending["principal"]["@odata.type"] == "#microsoft.graph.userIdentity"


def test_decided_instance_has_none_pending(graph: httpx.Client) -> None:
    url = decisions_path(SALES_APP_DEFINITION_ID, SALES_APP_DECIDED_INSTANCE_ID)

    assert values(graph.get(url)) != []
    assert values(graph.get(url, params=NOT_REVIEWED_FILTER)) == []


def test_decisions_of_missing_instance_404(graph: httpx.Client) -> None:
    url = decisions_path(GUEST_REVIEW_DEFINITION_ID, "00000000-0000-4000-8000-00000000beef")

    assert graph.get(url).status_code == 404


def test_definition_lists_stage_settings(graph: httpx.Client) -> None:
    multi_stage = graph.get(f"{DEFINITIONS}/{MULTI_STAGE_DEFINITION_ID}").json()
    single_stage = graph.get(f"{DEFINITIONS}/{GUEST_REVIEW_DEFINITION_ID}").json()

    assert [stage["stageId"] for stage in multi_stage["stageSettings"]] == ["1", "2"]
    assert multi_stage["stageSettings"][1]["dependsOn"] == ["1"]
    assert single_stage["stageSettings"] == []


def test_stages_filter_by_status(graph: httpx.Client) -> None:
    everything = values(graph.get(MULTI_STAGE_STAGES))
    in_progress = values(
        graph.get(MULTI_STAGE_STAGES, params={"$filter": "status eq 'InProgress'"})
    )

    assert [stage["id"] for stage in everything] == [
        MULTI_STAGE_COMPLETED_STAGE_ID,
        MULTI_STAGE_IN_PROGRESS_STAGE_ID,
    ]
    assert [stage["status"] for stage in everything] == ["Completed", "InProgress"]
    assert [stage["id"] for stage in in_progress] == [MULTI_STAGE_IN_PROGRESS_STAGE_ID]


def test_stage_has_graph_fields(graph: httpx.Client) -> None:
    response = graph.get(f"{MULTI_STAGE_STAGES}/{MULTI_STAGE_IN_PROGRESS_STAGE_ID}")

    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "InProgress"
    assert body["startDateTime"].endswith("Z")
    assert body["endDateTime"].endswith("Z")


def test_missing_stage_returns_404(graph: httpx.Client) -> None:
    response = graph.get(f"{MULTI_STAGE_STAGES}/00000000-0000-4000-8000-00000000beef/decisions")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "NotFound"


def test_stage_decisions_filter(graph: httpx.Client) -> None:
    current = f"{MULTI_STAGE_STAGES}/{MULTI_STAGE_IN_PROGRESS_STAGE_ID}/decisions"
    earlier = f"{MULTI_STAGE_STAGES}/{MULTI_STAGE_COMPLETED_STAGE_ID}/decisions"

    assert len(values(graph.get(current))) == 2
    assert len(values(graph.get(current, params=NOT_REVIEWED_FILTER))) == 1
    assert values(graph.get(earlier, params=NOT_REVIEWED_FILTER)) == []
    assert len(values(graph.get(current, params={"$top": "1"}))) == 1


def test_instance_decisions_span_stages(graph: httpx.Client) -> None:
    url = decisions_path(MULTI_STAGE_DEFINITION_ID, MULTI_STAGE_IN_PROGRESS_INSTANCE_ID)
    pages = collect_pages(graph, url)

    assert sum(len(page["value"]) for page in pages) == 4


def test_single_stage_instance_has_no_stages(graph: httpx.Client) -> None:
    url = stages_path(GUEST_REVIEW_DEFINITION_ID, GUEST_IN_PROGRESS_INSTANCE_IDS[0])

    assert values(graph.get(url)) == []


def test_set_decisions_clears_pending(graph: httpx.Client, emu: Emulators) -> None:
    pair = (GUEST_REVIEW_DEFINITION_ID, GUEST_IN_PROGRESS_INSTANCE_IDS[0])
    changed = emu.graph.set_decisions(*pair)

    assert changed == 3
    assert values(graph.get(decisions_path(*pair), params=NOT_REVIEWED_FILTER)) == []


def test_set_decisions_on_one_stage(graph: httpx.Client, emu: Emulators) -> None:
    pair = (MULTI_STAGE_DEFINITION_ID, MULTI_STAGE_IN_PROGRESS_INSTANCE_ID)
    emu.graph.set_decisions(*pair, "Deny", stage_id=MULTI_STAGE_IN_PROGRESS_STAGE_ID)
    stage_url = f"{MULTI_STAGE_STAGES}/{MULTI_STAGE_IN_PROGRESS_STAGE_ID}/decisions"

    decisions = [item["decision"] for item in values(graph.get(stage_url))]
    assert decisions == ["Deny", "Deny"]


def test_stage_status_change_moves_filter(graph: httpx.Client, emu: Emulators) -> None:
    pair = (MULTI_STAGE_DEFINITION_ID, MULTI_STAGE_IN_PROGRESS_INSTANCE_ID)
    emu.graph.set_stage_status(*pair, MULTI_STAGE_IN_PROGRESS_STAGE_ID, "Completed")

    response = graph.get(MULTI_STAGE_STAGES, params={"$filter": "status eq 'InProgress'"})

    assert values(response) == []


def test_add_stage_validates_input() -> None:
    graph = GraphEmulator()
    single = graph.add_definition("Single")
    single_instance = graph.add_instance(single, "InProgress")
    multi = graph.add_definition("Multi", stages=1)
    multi_instance = graph.add_instance(multi, "InProgress")
    graph.add_stage(multi, multi_instance, "InProgress")

    with pytest.raises(ValueError, match="single-stage"):
        graph.add_stage(single, single_instance, "InProgress")
    with pytest.raises(ValueError, match="already has 1 stages"):
        graph.add_stage(multi, multi_instance, "NotStarted")
    with pytest.raises(ValueError, match="stages must be"):
        graph.add_definition("Too many", stages=4)


def test_add_decision_validates_input() -> None:
    graph = GraphEmulator()
    definition_id = graph.add_definition("Test")
    instance_id = graph.add_instance(definition_id, "InProgress")

    with pytest.raises(ValueError, match="Unknown decision"):
        graph.add_decision(definition_id, instance_id, "Maybe")
    with pytest.raises(KeyError):
        graph.add_decision(definition_id, instance_id, stage_id=instance_id)
    with pytest.raises(KeyError):
        graph.add_decision(definition_id, "00000000-0000-4000-8000-000000000000")


# Sample tenant


def list_in_progress(graph: httpx.Client) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for page in collect_pages(graph, DEFINITIONS):
        for definition in page["value"]:
            url = f"{DEFINITIONS}/{definition['id']}/instances"
            for instances in collect_pages(graph, url, **{"$filter": "status eq 'InProgress'"}):
                pairs.extend((definition["id"], item["id"]) for item in instances["value"])
    return pairs


def has_pending(graph: httpx.Client, definition_id: str, instance_id: str) -> bool:
    """Tell whether the instance, or its InProgress stage, has a NotReviewed decision."""
    stages = values(
        graph.get(
            stages_path(definition_id, instance_id), params={"$filter": "status eq 'InProgress'"}
        )
    )
    if stages:
        urls = [
            f"{stages_path(definition_id, instance_id)}/{stage['id']}/decisions" for stage in stages
        ]
    else:
        urls = [decisions_path(definition_id, instance_id)]
    return any(values(graph.get(url, params=NOT_REVIEWED_FILTER)) for url in urls)


def test_sample_in_progress_matches_graph(graph: httpx.Client) -> None:
    assert list_in_progress(graph) == list(SAMPLE_IN_PROGRESS_INSTANCES)


def test_sample_pending_matches_decisions(graph: httpx.Client) -> None:
    pending = [pair for pair in SAMPLE_IN_PROGRESS_INSTANCES if has_pending(graph, *pair)]

    assert pending == list(SAMPLE_PENDING_INSTANCES)
    assert (SALES_APP_DEFINITION_ID, SALES_APP_DECIDED_INSTANCE_ID) not in pending


def test_sample_ending_soon_matches_dates(graph: httpx.Client) -> None:
    now = datetime.now(UTC)
    ends = {
        pair: datetime.fromisoformat(graph.get(instance_path(*pair)).json()["endDateTime"])
        for pair in SAMPLE_IN_PROGRESS_INSTANCES
    }

    soon = [pair for pair, end in ends.items() if end - now < timedelta(days=7)]
    assert soon == list(SAMPLE_ENDING_WITHIN_7_DAYS)
    assert any(end - now < timedelta(days=3) for end in ends.values())
    assert any(end - now > timedelta(days=20) for end in ends.values())


# SendReminder


def test_reminder_in_progress_returns_204(graph: httpx.Client, emu: Emulators) -> None:
    pair = (PRIVILEGED_ROLE_DEFINITION_ID, PRIVILEGED_IN_PROGRESS_INSTANCE_ID)
    response = graph.post(reminder_path(*pair))

    assert response.status_code == 204
    assert response.content == b""
    assert emu.graph.reminders == [pair]


@pytest.mark.parametrize(
    ("definition_id", "instance_id", "status"),
    [
        (PRIVILEGED_ROLE_DEFINITION_ID, PRIVILEGED_COMPLETED_INSTANCE_ID, "Completed"),
        (GUEST_REVIEW_DEFINITION_ID, GUEST_APPLIED_INSTANCE_ID, "Applied"),
        (FINANCE_APP_DEFINITION_ID, FINANCE_NOT_STARTED_INSTANCE_ID, "NotStarted"),
    ],
)
def test_reminder_inactive_instance_rejected(
    graph: httpx.Client, emu: Emulators, definition_id: str, instance_id: str, status: str
) -> None:
    response = graph.post(reminder_path(definition_id, instance_id))

    error = response.json()["error"]
    assert response.status_code == 400
    assert error["code"] == "BadRequest"
    assert status in error["message"]
    assert emu.graph.reminders == []


def test_reminder_after_status_change_rejected(graph: httpx.Client, emu: Emulators) -> None:
    pair = (GUEST_REVIEW_DEFINITION_ID, GUEST_IN_PROGRESS_INSTANCE_IDS[0])
    emu.graph.set_status(*pair, "Completed")

    response = graph.post(reminder_path(*pair))

    assert response.status_code == 400
    assert emu.graph.reminders == []


def test_reminder_missing_instance_404(graph: httpx.Client) -> None:
    response = graph.post(
        reminder_path(GUEST_REVIEW_DEFINITION_ID, "00000000-0000-4000-8000-00000000beef")
    )

    assert response.status_code == 404


def test_reminder_get_not_allowed(graph: httpx.Client) -> None:
    response = graph.get(
        reminder_path(PRIVILEGED_ROLE_DEFINITION_ID, PRIVILEGED_IN_PROGRESS_INSTANCE_ID)
    )

    assert response.status_code == 405


# Scripted faults


@pytest.mark.parametrize(
    "retry_after",
    [
        "3",
        "0.7",
        format_datetime(datetime.now(UTC) + timedelta(seconds=5), usegmt=True),
    ],
    ids=["seconds", "fractional-seconds", "http-date"],
)
def test_fault_429_sends_retry_after(graph: httpx.Client, emu: Emulators, retry_after: str) -> None:
    emu.graph.fail("GET", r"/definitions$", 429, retry_after=retry_after)

    throttled = graph.get(DEFINITIONS)
    after = graph.get(DEFINITIONS)

    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == retry_after
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    assert after.status_code == 200


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (500, "InternalServerError"),
        (503, "ServiceUnavailable"),
        (504, "GatewayTimeout"),
        (403, "Authorization_RequestDenied"),
    ],
)
def test_fault_status_uses_graph_code(
    graph: httpx.Client, emu: Emulators, status: int, code: str
) -> None:
    emu.graph.fail("POST", "sendReminder", status)

    response = graph.post(
        reminder_path(PRIVILEGED_ROLE_DEFINITION_ID, PRIVILEGED_IN_PROGRESS_INSTANCE_ID)
    )

    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert emu.graph.reminders == []


def test_fault_html_body_sent_verbatim(graph: httpx.Client, emu: Emulators) -> None:
    html = "<html><body><h1>502 Bad Gateway</h1></body></html>"
    emu.graph.fail("GET", "definitions", 502, body=html, content_type="text/html")

    response = graph.get(DEFINITIONS)

    assert response.status_code == 502
    assert response.text == html
    assert response.headers["content-type"] == "text/html"


def test_fault_empty_body_sent(graph: httpx.Client, emu: Emulators) -> None:
    emu.graph.fail("GET", "definitions", 503, body=b"")

    response = graph.get(DEFINITIONS)

    assert response.status_code == 503
    assert response.content == b""
    assert "content-type" not in response.headers


def test_fault_times_then_normal(graph: httpx.Client, emu: Emulators) -> None:
    emu.graph.fail("GET", "definitions", 503, times=2)

    statuses = [graph.get(DEFINITIONS).status_code for _ in range(3)]

    assert statuses == [503, 503, 200]
    assert emu.graph.pending_faults == 0


def test_faults_consumed_in_order(graph: httpx.Client, emu: Emulators) -> None:
    emu.graph.fail("GET", "definitions", 429, retry_after="1")
    emu.graph.add_fault(Fault("GET", "definitions", 500))

    statuses = [graph.get(DEFINITIONS).status_code for _ in range(3)]

    assert statuses == [429, 500, 200]


def test_fault_matches_method_and_path(graph: httpx.Client, emu: Emulators) -> None:
    emu.graph.fail("POST", "sendReminder$", 503)

    listing = graph.get(DEFINITIONS)

    assert listing.status_code == 200
    assert emu.graph.pending_faults == 1


def test_held_response_times_out_client(graph: httpx.Client, emu: Emulators) -> None:
    pair = (PRIVILEGED_ROLE_DEFINITION_ID, PRIVILEGED_IN_PROGRESS_INSTANCE_ID)
    emu.graph.fail("POST", "sendReminder$", 504, hold=True)

    with pytest.raises(httpx.ReadTimeout):
        graph.post(reminder_path(*pair), timeout=0.2)
    emu.graph.release()
    retried = graph.post(reminder_path(*pair))

    assert retried.status_code == 204
    assert [request.status for request in emu.graph.requests] == [504, 204]
    assert emu.graph.reminders == [pair]


def test_fault_probability_hits_fraction(graph: httpx.Client, emu: Emulators) -> None:
    emu.graph.fail("GET", "definitions", 429, times=1000, probability=0.3, seed=11)

    statuses = [graph.get(DEFINITIONS).status_code for _ in range(200)]

    assert 40 <= statuses.count(429) <= 80
    assert set(statuses) == {200, 429}


def test_fault_seed_repeats_sequence(graph: httpx.Client, emu: Emulators) -> None:
    runs = []
    for _ in range(2):
        emu.graph.clear_faults()
        emu.graph.fail("GET", "definitions", 503, times=1000, probability=0.5, seed=3)
        runs.append([graph.get(DEFINITIONS).status_code for _ in range(30)])

    assert runs[0] == runs[1]


def test_spared_request_reaches_next_fault(graph: httpx.Client, emu: Emulators) -> None:
    # A tiny probability spares the first request, so the fault queued after it applies.
    emu.graph.fail("GET", "definitions", 429, times=5, probability=1e-9, seed=1)
    emu.graph.fail("GET", "definitions", 500)

    statuses = [graph.get(DEFINITIONS).status_code for _ in range(2)]

    assert statuses == [500, 200]
    assert emu.graph.pending_faults == 5


@pytest.mark.parametrize("probability", [0.0, -0.1, 1.5])
def test_fault_probability_out_of_range(probability: float) -> None:
    with pytest.raises(ValueError, match="probability"):
        Fault("GET", "definitions", 429, probability=probability)


def test_passthrough_needs_hold_or_reset() -> None:
    with pytest.raises(ValueError, match="passthrough"):
        Fault("POST", "sendReminder$", 204, passthrough=True)


def test_reset_fault_drops_connection(graph: httpx.Client, emu: Emulators) -> None:
    pair = (PRIVILEGED_ROLE_DEFINITION_ID, PRIVILEGED_IN_PROGRESS_INSTANCE_ID)
    emu.graph.fail("POST", "sendReminder$", 502, reset=True)

    with pytest.raises(httpx.TransportError):
        graph.post(reminder_path(*pair))
    retried = graph.post(reminder_path(*pair))

    assert retried.status_code == 204
    assert [request.reset for request in emu.graph.requests] == [True, False]
    assert emu.graph.reminders == [pair]


def test_passthrough_reset_after_effect(graph: httpx.Client, emu: Emulators) -> None:
    pair = (PRIVILEGED_ROLE_DEFINITION_ID, PRIVILEGED_IN_PROGRESS_INSTANCE_ID)
    emu.graph.fail("POST", "sendReminder$", 500, reset=True, passthrough=True)

    with pytest.raises(httpx.TransportError):
        graph.post(reminder_path(*pair))

    assert emu.graph.reminders == [pair]
    assert emu.graph.requests[0].status == 204
    assert emu.graph.requests[0].reset is True


def test_passthrough_hold_counts_held(graph: httpx.Client, emu: Emulators) -> None:
    pair = (PRIVILEGED_ROLE_DEFINITION_ID, PRIVILEGED_IN_PROGRESS_INSTANCE_ID)
    emu.graph.fail("POST", "sendReminder$", 500, hold=True, passthrough=True)

    with pytest.raises(httpx.ReadTimeout):
        graph.post(reminder_path(*pair), timeout=0.2)
    held = emu.graph.wait_for_held(1, timeout_s=5.0)
    held_count = emu.graph.held_count
    reminded_while_held = emu.graph.reminders
    emu.graph.release()

    assert held is True
    assert held_count == 1
    assert reminded_while_held == [pair]


def test_batch_sub_request_reset(graph: httpx.Client, emu: Emulators) -> None:
    path = reminder_path(PRIVILEGED_ROLE_DEFINITION_ID, PRIVILEGED_IN_PROGRESS_INSTANCE_ID)
    emu.graph.fail("GET", "/definitions$", 500, reset=True)
    requests = [
        {"id": "1", "method": "POST", "url": path.removeprefix("/v1.0")},
        {"id": "2", "method": "GET", "url": DEFINITIONS.removeprefix("/v1.0")},
    ]

    with pytest.raises(httpx.TransportError):
        graph.post("/v1.0/$batch", json={"requests": requests})

    assert len(emu.graph.reminders) == 1
    assert emu.graph.requests[-1].path == "/v1.0/$batch"
    assert emu.graph.requests[-1].reset is True


def test_identity_reset_fault(anonymous: httpx.Client, emu: Emulators) -> None:
    emu.identity.fail(500, reset=True)

    with pytest.raises(httpx.TransportError):
        anonymous.get(
            emu.identity_endpoint,
            params={"api-version": "2019-08-01", "resource": emu.graph_endpoint},
            headers={"X-IDENTITY-HEADER": emu.identity_header},
        )
    assert emu.identity.issued_tokens == []


# Authentication and authorization


def test_missing_token_returns_401(anonymous: httpx.Client, emu: Emulators) -> None:
    response = anonymous.get(DEFINITIONS)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert emu.graph.requests[-1].has_authorization is False


def test_unknown_token_returns_401(anonymous: httpx.Client) -> None:
    response = anonymous.get(DEFINITIONS, headers={"Authorization": "Bearer made-up"})

    assert response.status_code == 401


def test_basic_scheme_returns_401(anonymous: httpx.Client) -> None:
    response = anonymous.get(DEFINITIONS, headers={"Authorization": "Basic dXNlcjpwYXNz"})

    assert response.status_code == 401


def test_token_for_other_resource_rejected(anonymous: httpx.Client, emu: Emulators) -> None:
    token = fetch_token(anonymous, emu, resource="https://management.azure.com")

    response = anonymous.get(DEFINITIONS, headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401
    assert "resource" in response.json()["error"]["message"]


def test_token_with_trailing_slash_accepted(anonymous: httpx.Client, emu: Emulators) -> None:
    token = fetch_token(anonymous, emu, resource=emu.graph_endpoint + "/")

    response = anonymous.get(DEFINITIONS, headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200


def test_expired_token_returns_401(anonymous: httpx.Client, emu: Emulators) -> None:
    emu.identity.token_lifetime_s = 0
    token = fetch_token(anonymous, emu)

    response = anonymous.get(DEFINITIONS, headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


def test_deny_access_returns_403(graph: httpx.Client, emu: Emulators) -> None:
    emu.graph.deny_access()
    denied = graph.get(DEFINITIONS)
    emu.graph.deny_access(False)
    allowed = graph.get(DEFINITIONS)

    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "Authorization_RequestDenied"
    assert allowed.status_code == 200


def test_requests_recorded_without_token(graph: httpx.Client, emu: Emulators) -> None:
    graph.get(DEFINITIONS, params={"$top": "1"})

    record = emu.graph.requests[-1]
    assert record.method == "GET"
    assert record.path == DEFINITIONS
    assert record.query == {"$top": "1"}
    assert record.has_authorization is True
    assert "Bearer" not in repr(record)


# Identity emulator


def test_identity_wrong_header_rejected(anonymous: httpx.Client, emu: Emulators) -> None:
    response = anonymous.get(
        emu.identity_endpoint,
        params={"api-version": "2019-08-01", "resource": emu.graph_endpoint},
        headers={"X-IDENTITY-HEADER": "wrong-secret"},
    )

    assert response.status_code == 401
    assert "access_token" not in response.json()


def test_identity_missing_header_rejected(anonymous: httpx.Client, emu: Emulators) -> None:
    response = anonymous.get(
        emu.identity_endpoint,
        params={"api-version": "2019-08-01", "resource": emu.graph_endpoint},
    )

    assert response.status_code == 400


@pytest.mark.parametrize(
    "params",
    [
        {"api-version": "2017-09-01", "resource": "http://127.0.0.1"},
        {"resource": "http://127.0.0.1"},
        {"api-version": "2019-08-01"},
        {"api-version": "2019-08-01", "resource": ""},
    ],
    ids=["old-api-version", "no-api-version", "no-resource", "empty-resource"],
)
def test_identity_bad_query_rejected(
    anonymous: httpx.Client, emu: Emulators, params: dict[str, str]
) -> None:
    response = anonymous.get(
        emu.identity_endpoint, params=params, headers={"X-IDENTITY-HEADER": emu.identity_header}
    )

    assert response.status_code == 400
    assert response.json()["statusCode"] == 400


def test_identity_response_shape(anonymous: httpx.Client, emu: Emulators) -> None:
    response = anonymous.get(
        emu.identity_endpoint,
        params={
            "api-version": "2019-08-01",
            "resource": emu.graph_endpoint,
            "client_id": KNOWN_CLIENT_ID,
        },
        headers={"X-IDENTITY-HEADER": emu.identity_header},
    )

    body = response.json()
    assert response.status_code == 200
    assert body["token_type"] == "Bearer"
    assert body["resource"] == emu.graph_endpoint
    assert body["client_id"] == KNOWN_CLIENT_ID
    assert isinstance(body["expires_on"], str)
    assert int(body["expires_on"]) > datetime.now(UTC).timestamp()


def test_identity_fault_returns_status(anonymous: httpx.Client, emu: Emulators) -> None:
    emu.identity.fail(503, retry_after="2")

    response = anonymous.get(
        emu.identity_endpoint,
        params={"api-version": "2019-08-01", "resource": emu.graph_endpoint},
        headers={"X-IDENTITY-HEADER": emu.identity_header},
    )

    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"


def test_credential_token_works_on_graph(
    managed_identity_env: None, emu: Emulators, anonymous: httpx.Client
) -> None:
    credential = ManagedIdentityCredential()
    token = credential.get_token(f"{emu.graph_endpoint}/.default")

    response = anonymous.get(DEFINITIONS, headers={"Authorization": f"Bearer {token.token}"})

    assert response.status_code == 200
    assert emu.identity.token_requests[-1].resource == emu.graph_endpoint
    assert emu.identity.token_requests[-1].client_id is None
    assert token.expires_on > datetime.now(UTC).timestamp()


def test_credential_with_client_id(
    managed_identity_env: None, emu: Emulators, anonymous: httpx.Client
) -> None:
    credential = ManagedIdentityCredential(client_id=KNOWN_CLIENT_ID)
    token = credential.get_token(f"{emu.graph_endpoint}/.default")

    response = anonymous.get(DEFINITIONS, headers={"Authorization": f"Bearer {token.token}"})

    assert response.status_code == 200
    assert emu.identity.token_requests[-1].client_id == KNOWN_CLIENT_ID


def test_credential_unknown_client_id_fails(managed_identity_env: None, emu: Emulators) -> None:
    credential = ManagedIdentityCredential(client_id=UNKNOWN_CLIENT_ID)

    with pytest.raises(ClientAuthenticationError, match=UNKNOWN_CLIENT_ID):
        credential.get_token(f"{emu.graph_endpoint}/.default")
    assert emu.identity.token_requests[-1].status == 400


def test_credential_wrong_header_fails(
    managed_identity_env: None, emu: Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "wrong-secret")
    credential = ManagedIdentityCredential()

    with pytest.raises(ClientAuthenticationError):
        credential.get_token(f"{emu.graph_endpoint}/.default")
    assert emu.identity.token_requests[-1].status == 401


def test_credential_retries_identity_fault(managed_identity_env: None, emu: Emulators) -> None:
    # azure-core's retry policy retries the first 500 at once, without a backoff.
    emu.identity.fail(500)
    credential = ManagedIdentityCredential()

    token = credential.get_token(f"{emu.graph_endpoint}/.default")

    assert token.token
    assert [request.status for request in emu.identity.token_requests] == [500, 200]


def test_identity_emulator_standalone() -> None:
    identity = IdentityEmulator(identity_header="fixed-secret").start()
    try:
        with httpx.Client(trust_env=False) as client:
            response = client.get(
                identity.endpoint,
                params={"api-version": "2019-08-01", "resource": "http://127.0.0.1:1"},
                headers={"X-IDENTITY-HEADER": "fixed-secret"},
            )
    finally:
        identity.stop()

    assert response.status_code == 200
    assert identity.verify_token(response.json()["access_token"], "http://127.0.0.1:1") is None


# Harness and command line


def test_environ_lists_endpoints(emu: Emulators) -> None:
    environ = emu.environ()

    assert environ["GRAPH_ENDPOINT"] == emu.graph_endpoint
    assert environ["IDENTITY_ENDPOINT"] == emu.identity_endpoint
    assert environ["IDENTITY_HEADER"] == emu.identity_header
    assert emu.graph_endpoint.startswith("http://127.0.0.1:")
    assert not emu.graph_endpoint.endswith("/")
    assert emu.identity_endpoint.endswith("/msi/token")


def test_stop_closes_ports() -> None:
    emu = Emulators.start()
    endpoint = emu.graph_endpoint
    emu.stop()

    with httpx.Client(trust_env=False) as client, pytest.raises(httpx.ConnectError):
        client.get(endpoint + DEFINITIONS)


def test_cli_prints_exports_and_serves() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "emulators", "--page-size", "1"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        exports: dict[str, str] = {}
        for line in process.stdout:
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").strip().partition("=")
                exports[name] = value
            if "Ctrl+C" in line:
                break
        with httpx.Client(trust_env=False) as client:
            response = client.get(
                exports["IDENTITY_ENDPOINT"],
                params={"api-version": "2019-08-01", "resource": exports["GRAPH_ENDPOINT"]},
                headers={"X-IDENTITY-HEADER": exports["IDENTITY_HEADER"]},
            )
    finally:
        process.send_signal(signal.SIGTERM)
        exit_code = process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

    assert set(exports) == {"GRAPH_ENDPOINT", "IDENTITY_ENDPOINT", "IDENTITY_HEADER"}
    assert response.status_code == 200
    assert exit_code == 0
