"""Tests of the Graph emulator's JSON batching, throttle and latency, over loopback sockets."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from emulators import Emulators, GraphEmulator, Throttle
from emulators.sample import (
    GUEST_IN_PROGRESS_INSTANCE_IDS,
    GUEST_REVIEW_DEFINITION_ID,
    PRIVILEGED_IN_PROGRESS_INSTANCE_ID,
    PRIVILEGED_ROLE_DEFINITION_ID,
    seed_sample_tenant,
)
from emulators.throttle import TokenBucket, retry_after_seconds
from tests.conftest import FakeClock

BATCH = "/v1.0/$batch"
DEFINITIONS = "/identityGovernance/accessReviews/definitions"
GUEST = f"{DEFINITIONS}/{GUEST_REVIEW_DEFINITION_ID}"
PRIVILEGED_REMINDER = (
    f"{DEFINITIONS}/{PRIVILEGED_ROLE_DEFINITION_ID}"
    f"/instances/{PRIVILEGED_IN_PROGRESS_INSTANCE_ID}/sendReminder"
)
AUTHORIZATION = {"Authorization": "Bearer any-token"}


def get(request_id: str, url: str) -> dict[str, Any]:
    return {"id": request_id, "method": "GET", "url": url}


def responses_by_id(response: httpx.Response) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200
    entries: list[dict[str, Any]] = response.json()["responses"]
    return {entry["id"]: entry for entry in entries}


def start_graph(**options: Any) -> GraphEmulator:
    """Start a seeded Graph emulator that accepts any bearer token."""
    graph = GraphEmulator(**options).start()
    seed_sample_tenant(graph)
    return graph


@pytest.fixture
def emulator() -> Iterator[GraphEmulator]:
    graph = start_graph()
    try:
        yield graph
    finally:
        graph.stop()


@pytest.fixture
def client(emulator: GraphEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=emulator.endpoint, headers=AUTHORIZATION, trust_env=False, timeout=5.0
    ) as http:
        yield http


def post_batch(client: httpx.Client, requests: list[dict[str, Any]]) -> httpx.Response:
    return client.post(BATCH, json={"requests": requests})


# Batch routing and validation


def test_batch_routes_each_request(client: httpx.Client, emulator: GraphEmulator) -> None:
    response = post_batch(
        client,
        [
            get("definition", GUEST),
            get("instances", f"{GUEST}/instances?$filter=status eq 'Applied'"),
            {"id": "remind", "method": "POST", "url": PRIVILEGED_REMINDER},
            get("missing", f"{DEFINITIONS}/00000000-0000-4000-8000-00000000dead"),
        ],
    )

    entries = responses_by_id(response)
    assert entries["definition"]["status"] == 200
    assert entries["definition"]["body"]["id"] == GUEST_REVIEW_DEFINITION_ID
    assert entries["definition"]["headers"]["Content-Type"] == "application/json"
    assert entries["instances"]["status"] == 200
    assert len(entries["instances"]["body"]["value"]) == 1
    assert entries["remind"]["status"] == 204
    assert "body" not in entries["remind"]
    assert entries["missing"]["status"] == 404
    assert entries["missing"]["body"]["error"]["code"] == "NotFound"


def test_batch_responses_out_of_order(client: httpx.Client) -> None:
    ids = ["a", "b", "c"]
    response = post_batch(client, [get(request_id, DEFINITIONS) for request_id in ids])

    returned = [entry["id"] for entry in response.json()["responses"]]
    assert sorted(returned) == ids
    assert returned != ids


def test_batch_url_without_leading_slash(client: httpx.Client) -> None:
    response = post_batch(client, [get("1", GUEST.lstrip("/"))])

    assert responses_by_id(response)["1"]["status"] == 200


def test_batch_reminder_counted(client: httpx.Client, emulator: GraphEmulator) -> None:
    post_batch(client, [{"id": "1", "method": "POST", "url": PRIVILEGED_REMINDER}])

    assert emulator.reminders == [
        (PRIVILEGED_ROLE_DEFINITION_ID, PRIVILEGED_IN_PROGRESS_INSTANCE_ID)
    ]


def test_batch_sub_requests_recorded(client: httpx.Client, emulator: GraphEmulator) -> None:
    post_batch(
        client,
        [get("1", f"{GUEST}?$select=displayName"), get("2", DEFINITIONS)],
    )

    records = emulator.requests
    assert [record.path for record in records] == [
        "/v1.0" + GUEST,
        "/v1.0" + DEFINITIONS,
        BATCH,
    ]
    assert [record.batched for record in records] == [True, True, False]
    assert records[0].query == {"$select": "displayName"}
    assert records[0].has_authorization is True
    assert emulator.batch_count == 1


def test_batch_of_20_accepted(client: httpx.Client) -> None:
    response = post_batch(client, [get(str(number), DEFINITIONS) for number in range(20)])

    assert len(responses_by_id(response)) == 20


def test_batch_of_21_rejected(client: httpx.Client, emulator: GraphEmulator) -> None:
    response = post_batch(client, [get(str(number), DEFINITIONS) for number in range(21)])

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"
    assert "20" in response.json()["error"]["message"]
    assert [record.batched for record in emulator.requests] == [False]
    assert emulator.batch_count == 0


@pytest.mark.parametrize(
    "body",
    [
        {"requests": [get("1", DEFINITIONS), get("1", GUEST)]},
        {"requests": [{"method": "GET", "url": DEFINITIONS}]},
        {"requests": [{"id": "1", "url": DEFINITIONS}]},
        {"requests": [{"id": "1", "method": "GET"}]},
        {"requests": [{"id": 1, "method": "GET", "url": DEFINITIONS}]},
        {"requests": [get("1", "https://graph.microsoft.com/v1.0" + DEFINITIONS)]},
        {"requests": [{**get("1", DEFINITIONS), "dependsOn": ["2"]}]},
        {"requests": [{**get("1", DEFINITIONS), "headers": ["not", "an", "object"]}]},
        {"requests": []},
        {"items": []},
        [],
    ],
    ids=[
        "duplicate-id",
        "no-id",
        "no-method",
        "no-url",
        "numeric-id",
        "absolute-url",
        "unknown-dependency",
        "bad-headers",
        "empty",
        "no-requests",
        "not-object",
    ],
)
def test_batch_invalid_body_rejected(client: httpx.Client, body: object) -> None:
    response = client.post(BATCH, json=body)

    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"


def test_batch_invalid_json_rejected(client: httpx.Client) -> None:
    response = client.post(
        BATCH, content=b"{not json", headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400


def test_batch_get_not_allowed(client: httpx.Client) -> None:
    response = client.get(BATCH)

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_batch_inside_batch_rejected(client: httpx.Client) -> None:
    response = post_batch(client, [{"id": "1", "method": "POST", "url": "/$batch"}])

    assert responses_by_id(response)["1"]["status"] == 400


def test_batch_failed_dependency_is_424(client: httpx.Client, emulator: GraphEmulator) -> None:
    response = post_batch(
        client,
        [
            get("missing", f"{DEFINITIONS}/00000000-0000-4000-8000-00000000dead"),
            {
                "id": "remind",
                "method": "POST",
                "url": PRIVILEGED_REMINDER,
                "dependsOn": ["missing"],
            },
        ],
    )

    entries = responses_by_id(response)
    assert entries["remind"]["status"] == 424
    assert entries["remind"]["body"]["error"]["code"] == "FailedDependency"
    assert emulator.reminders == []


# Authentication, access and faults


def test_batch_requires_token(emulator: GraphEmulator) -> None:
    with httpx.Client(base_url=emulator.endpoint, trust_env=False) as anonymous:
        response = anonymous.post(BATCH, json={"requests": [get("1", DEFINITIONS)]})

    assert response.status_code == 401
    assert [record.batched for record in emulator.requests] == [False]


def test_batch_deny_access_per_request(client: httpx.Client, emulator: GraphEmulator) -> None:
    emulator.deny_access()

    response = post_batch(client, [get("1", DEFINITIONS), get("2", GUEST)])

    entries = responses_by_id(response)
    assert entries["1"]["status"] == 403
    assert entries["2"]["status"] == 403
    assert entries["1"]["body"]["error"]["code"] == "Authorization_RequestDenied"


def test_batch_fault_hits_sub_request(client: httpx.Client, emulator: GraphEmulator) -> None:
    emulator.fail("POST", r"/sendReminder$", 429, retry_after="3")

    response = post_batch(
        client,
        [get("list", DEFINITIONS), {"id": "remind", "method": "POST", "url": PRIVILEGED_REMINDER}],
    )

    entries = responses_by_id(response)
    assert entries["remind"]["status"] == 429
    assert entries["remind"]["headers"]["Retry-After"] == "3"
    assert entries["remind"]["body"]["error"]["code"] == "TooManyRequests"
    assert entries["list"]["status"] == 200
    assert "Retry-After" not in entries["list"]["headers"]
    assert emulator.reminders == []


def test_batch_fault_fails_whole_batch(client: httpx.Client, emulator: GraphEmulator) -> None:
    emulator.fail("POST", r"/\$batch$", 503)

    failed = post_batch(client, [{"id": "1", "method": "POST", "url": PRIVILEGED_REMINDER}])
    retried = post_batch(client, [{"id": "1", "method": "POST", "url": PRIVILEGED_REMINDER}])

    assert failed.status_code == 503
    assert failed.json()["error"]["code"] == "ServiceUnavailable"
    assert retried.status_code == 200
    assert emulator.batch_count == 1
    assert len(emulator.reminders) == 1


def test_batch_fault_html_body_base64(client: httpx.Client, emulator: GraphEmulator) -> None:
    html = "<html><body>502 Bad Gateway</body></html>"
    emulator.fail("GET", r"/definitions$", 502, body=html, content_type="text/html")

    response = post_batch(client, [get("1", DEFINITIONS)])

    entry = responses_by_id(response)["1"]
    assert entry["status"] == 502
    assert entry["headers"]["Content-Type"] == "text/html"
    assert base64.b64decode(entry["body"]).decode() == html


def test_batch_held_fault_holds_batch(client: httpx.Client, emulator: GraphEmulator) -> None:
    emulator.fail("POST", r"/sendReminder$", 504, hold=True)
    reminder = [{"id": "1", "method": "POST", "url": PRIVILEGED_REMINDER}]

    with pytest.raises(httpx.ReadTimeout):
        client.post(BATCH, json={"requests": reminder}, timeout=0.2)
    emulator.release()
    retried = post_batch(client, reminder)

    assert responses_by_id(retried)["1"]["status"] == 204


# Throttle


def test_bucket_allows_burst_then_waits(clock: FakeClock) -> None:
    bucket = TokenBucket(Throttle(limit=3, window_s=10.0), clock.monotonic)

    admitted = [bucket.take() for _ in range(3)]
    wait_s = bucket.take()

    assert admitted == [None, None, None]
    assert wait_s == pytest.approx(10.0 / 3)


def test_bucket_refills_continuously(clock: FakeClock) -> None:
    bucket = TokenBucket(Throttle(limit=2, window_s=10.0), clock.monotonic)
    bucket.take()
    bucket.take()

    clock.now += 2.5
    waiting = bucket.take()
    clock.now += 2.5
    refilled = bucket.take()

    assert waiting == pytest.approx(2.5)
    assert refilled is None


def test_bucket_never_exceeds_limit(clock: FakeClock) -> None:
    bucket = TokenBucket(Throttle(limit=2, window_s=10.0), clock.monotonic)

    clock.now += 1000.0
    results = [bucket.take() for _ in range(3)]

    assert results[:2] == [None, None]
    assert results[2] is not None


@pytest.mark.parametrize(
    ("wait_s", "header"), [(0.001, 1), (1.0, 1), (1.2, 2), (3.3333333, 4), (0.0, 1)]
)
def test_retry_after_rounds_up(wait_s: float, header: int) -> None:
    assert retry_after_seconds(wait_s) == header


@pytest.mark.parametrize(("limit", "window_s"), [(0, 10.0), (5, 0.0), (5, -1.0)])
def test_throttle_rejects_bad_settings(limit: int, window_s: float) -> None:
    with pytest.raises(ValueError, match="Throttle"):
        Throttle(limit, window_s)


@pytest.fixture
def throttled(clock: FakeClock) -> Iterator[GraphEmulator]:
    graph = start_graph(throttle=Throttle(limit=3, window_s=10.0), time_source=clock.monotonic)
    try:
        yield graph
    finally:
        graph.stop()


@pytest.fixture
def throttled_client(throttled: GraphEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=throttled.endpoint, headers=AUTHORIZATION, trust_env=False, timeout=5.0
    ) as http:
        yield http


def test_throttle_answers_429(throttled_client: httpx.Client, throttled: GraphEmulator) -> None:
    statuses = [throttled_client.get("/v1.0" + DEFINITIONS).status_code for _ in range(3)]
    refused = throttled_client.get("/v1.0" + DEFINITIONS)

    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "TooManyRequests"
    assert refused.headers["retry-after"] == "4"
    assert throttled.throttled_count == 1
    assert throttled.request_count == 4


def test_throttle_admits_after_wait(
    throttled_client: httpx.Client, throttled: GraphEmulator, clock: FakeClock
) -> None:
    for _ in range(3):
        throttled_client.get("/v1.0" + DEFINITIONS)
    refused = throttled_client.get("/v1.0" + DEFINITIONS)

    clock.now += int(refused.headers["retry-after"])
    admitted = throttled_client.get("/v1.0" + DEFINITIONS)

    assert refused.status_code == 429
    assert admitted.status_code == 200


def test_throttle_counts_batched_requests(
    throttled_client: httpx.Client, throttled: GraphEmulator
) -> None:
    requests = [get(str(number), DEFINITIONS) for number in range(5)]

    response = throttled_client.post(BATCH, json={"requests": requests})

    entries = responses_by_id(response)
    assert [entries[str(number)]["status"] for number in range(5)] == [200, 200, 200, 429, 429]
    assert entries["3"]["headers"]["Retry-After"] == "4"
    assert entries["4"]["headers"]["Retry-After"] == "4"
    assert "Retry-After" not in entries["0"]["headers"]
    assert throttled.request_count == 5
    assert throttled.throttled_count == 2


def test_throttle_batch_envelope_free(
    throttled_client: httpx.Client, throttled: GraphEmulator
) -> None:
    first = throttled_client.post(BATCH, json={"requests": [get("1", DEFINITIONS)]})
    second = throttled_client.post(
        BATCH, json={"requests": [get("2", DEFINITIONS), get("3", DEFINITIONS)]}
    )

    assert responses_by_id(first)["1"]["status"] == 200
    assert {entry["status"] for entry in responses_by_id(second).values()} == {200}
    assert throttled.request_count == 3


def test_throttle_can_be_turned_off(
    throttled_client: httpx.Client, throttled: GraphEmulator
) -> None:
    for _ in range(3):
        throttled_client.get("/v1.0" + DEFINITIONS)

    throttled.set_throttle(None)
    response = throttled_client.get("/v1.0" + DEFINITIONS)

    assert response.status_code == 200
    assert throttled.throttle is None


def test_request_count_without_throttle(client: httpx.Client, emulator: GraphEmulator) -> None:
    client.get("/v1.0" + DEFINITIONS)
    post_batch(client, [get("1", DEFINITIONS), get("2", GUEST)])

    assert emulator.request_count == 3
    assert emulator.throttled_count == 0


def test_harness_passes_throttle() -> None:
    with Emulators.start(throttle_limit=7, throttle_window_s=2.0, latency_s=0.01) as emu:
        throttle = emu.graph.throttle
        latency_s = emu.graph.latency_s

    assert throttle == Throttle(7, 2.0)
    assert latency_s == 0.01


# Latency


def test_latency_applied_once_per_batch() -> None:
    graph = start_graph(latency_s=0.05)
    try:
        with httpx.Client(base_url=graph.endpoint, headers=AUTHORIZATION, trust_env=False) as http:
            started = time.monotonic()
            response = post_batch(http, [get(str(number), DEFINITIONS) for number in range(3)])
            elapsed_s = time.monotonic() - started
    finally:
        graph.stop()

    assert response.status_code == 200
    assert elapsed_s >= 0.05
    assert [record.delay_s for record in graph.requests] == [0.0, 0.0, 0.0, 0.05]


def test_latency_delays_response(emulator: GraphEmulator, client: httpx.Client) -> None:
    emulator.latency_s = 1.0

    with pytest.raises(httpx.ReadTimeout):
        client.get("/v1.0" + DEFINITIONS, timeout=0.05)
    emulator.latency_s = 0.0


def test_latency_rejects_negative() -> None:
    with pytest.raises(ValueError, match="latency_s"):
        GraphEmulator(latency_s=-0.1)


def test_guest_reminders_in_one_batch(client: httpx.Client, emulator: GraphEmulator) -> None:
    requests = [
        {
            "id": instance_id,
            "method": "POST",
            "url": f"{GUEST}/instances/{instance_id}/sendReminder",
        }
        for instance_id in GUEST_IN_PROGRESS_INSTANCE_IDS
    ]

    response = post_batch(client, requests)

    statuses = {entry_id: entry["status"] for entry_id, entry in responses_by_id(response).items()}
    assert statuses == dict.fromkeys(GUEST_IN_PROGRESS_INSTANCE_IDS, 204)
    assert sorted(emulator.reminders) == sorted(
        (GUEST_REVIEW_DEFINITION_ID, instance_id) for instance_id in GUEST_IN_PROGRESS_INSTANCE_IDS
    )
