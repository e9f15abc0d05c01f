from __future__ import annotations

import json

import pytest

from review_reminders.errors import (
    ConfigurationError,
    GraphError,
    GraphNotFoundError,
    GraphPermissionError,
    GraphThrottledError,
    InstanceNotActiveError,
    TokenError,
)
from review_reminders.http_api import (
    MAX_BODY_BYTES,
    PROBLEM_CONTENT_TYPE,
    InvalidRequestError,
    ReminderRequest,
    error_response,
    parse_reminder_request,
    results_response,
)
from review_reminders.results import Outcome, ReminderResult

DEF = "11111111-1111-1111-1111-111111111111"
INST = "22222222-2222-2222-2222-222222222222"
URL = "https://graph.microsoft.com/v1.0/x"


def reject(body: bytes, content_type: str | None = "application/json") -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        parse_reminder_request(body, content_type)
    return caught.value


def pointers(error: InvalidRequestError) -> list[str]:
    return [item["pointer"] for item in error.response.body.get("errors", [])]


def test_definition_only_accepted() -> None:
    request = parse_reminder_request(json.dumps({"definitionId": DEF}).encode(), None)
    assert request == ReminderRequest(DEF, None)


def test_instance_accepted_and_lowercased() -> None:
    body = json.dumps({"definitionId": DEF.upper(), "instanceId": INST.upper()}).encode()
    request = parse_reminder_request(body, "application/json; charset=utf-8")
    assert request == ReminderRequest(DEF, INST)


@pytest.mark.parametrize(
    "body",
    [b"", b"   ", b"{", b"nul", b"[]", b'"text"', b"42", b"null", b"\xff\xfe{}", b'{"a": NaN}'],
)
def test_malformed_bodies_rejected(body: bytes) -> None:
    error = reject(body)
    assert error.response.status == 400
    assert error.response.content_type == PROBLEM_CONTENT_TYPE


def test_missing_definition_rejected() -> None:
    assert pointers(reject(b"{}")) == ["#/definitionId"]


def test_instance_without_definition_rejected() -> None:
    error = reject(json.dumps({"instanceId": INST}).encode())
    assert pointers(error) == ["#/definitionId"]
    assert "instance" in error.response.body["errors"][0]["detail"]


@pytest.mark.parametrize(
    "value",
    [
        42,
        None,
        ["x"],
        {"id": DEF},
        DEF + "/../../me",
        DEF + "%2F",
        DEF + "\n",
        "../" + DEF,
        DEF.replace("1", "\u0661"),  # ARABIC-INDIC DIGIT ONE
        DEF.replace("1", "\uff11"),  # FULLWIDTH DIGIT ONE
        "{" + DEF + "}",
    ],
)
def test_bad_definition_id_rejected(value: object) -> None:
    assert pointers(reject(json.dumps({"definitionId": value}).encode())) == ["#/definitionId"]


def test_unknown_fields_each_reported() -> None:
    body = json.dumps({"definitionId": DEF, "notify": True, "a/b": 1}).encode()
    assert pointers(reject(body)) == ["#/notify", "#/a~1b"]


def test_every_problem_reported_at_once() -> None:
    body = json.dumps({"definitionId": "x", "instanceId": 5, "extra": 1}).encode()
    assert sorted(pointers(reject(body))) == ["#/definitionId", "#/extra", "#/instanceId"]


def test_duplicate_keys_rejected() -> None:
    body = f'{{"definitionId": "{DEF}", "definitionId": "{INST}"}}'.encode()
    assert reject(body).response.status == 400


def test_deep_nesting_rejected() -> None:
    assert reject(b"[" * 30_000 + b"]" * 30_000).response.status == 400


def test_large_body_is_413() -> None:
    assert reject(b" " * (MAX_BODY_BYTES + 1)).response.status == 413


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_wrong_content_type_is_415(content_type: str) -> None:
    assert reject(b"{}", content_type).response.status == 415


def test_problem_json_shape() -> None:
    body = reject(b"{}").response.body
    assert body["type"].startswith("urn:")
    assert body["title"]
    assert body["status"] == 400
    assert body["detail"]


# Results mapping


def result(outcome: Outcome, **fields: object) -> ReminderResult:
    return ReminderResult(DEF, INST, outcome, **fields)  # type: ignore[arg-type]


def test_all_sent_is_200() -> None:
    response = results_response([result(Outcome.SENT, request_id="r")])
    assert response.status == 200
    assert response.body["summary"] == {"sent": 1, "skipped": 0, "failed": 0, "wouldSend": 0}
    assert response.body["results"][0] == {
        "definitionId": DEF,
        "instanceId": INST,
        "outcome": "sent",
        "requestId": "r",
    }


def test_nothing_to_do_is_200() -> None:
    assert results_response([]).status == 200


def test_partial_failure_is_207() -> None:
    response = results_response([result(Outcome.SENT), result(Outcome.FAILED, reason="x")])
    assert response.status == 207
    assert response.body["summary"]["failed"] == 1


def test_all_failed_is_502_problem() -> None:
    response = results_response([result(Outcome.FAILED, reason="x"), result(Outcome.SKIPPED)])
    assert response.status == 502
    assert response.content_type == PROBLEM_CONTENT_TYPE
    assert response.body["results"][0]["reason"] == "x"


def test_all_throttled_is_503_with_retry_after() -> None:
    response = results_response(
        [
            result(Outcome.FAILED, throttled=True, retry_after_s=2.2),
            result(Outcome.FAILED, throttled=True, retry_after_s=7.1),
        ]
    )
    assert response.status == 503
    assert response.headers["Retry-After"] == "8"


def test_error_mapping_statuses() -> None:
    request = ReminderRequest(DEF, INST)
    cases = {
        GraphNotFoundError("gone", method="GET", url=URL, status=404): 404,
        InstanceNotActiveError(DEF, INST, "Completed"): 409,
        GraphPermissionError("no", method="GET", url=URL, status=403, request_id="r1"): 502,
        TokenError("system-assigned managed identity", "scope", "down"): 502,
        GraphThrottledError("slow", method="GET", url=URL, status=429, retry_after_s=3): 503,
        GraphError("boom", method="GET", url=URL, status=500): 502,
        ConfigurationError(["GRAPH_ENDPOINT is bad"]): 500,
        RuntimeError("secret detail"): 500,
    }
    for exc, status in cases.items():
        response = error_response(exc, request, "inv-1")
        assert response.status == status, exc
        assert response.content_type == PROBLEM_CONTENT_TYPE
        assert response.body["instance"] == "urn:uuid:inv-1"


def test_unexpected_error_detail_hidden() -> None:
    response = error_response(RuntimeError("secret detail"), ReminderRequest(DEF), None)
    assert "secret detail" not in json.dumps(response.body)


def test_permission_problem_names_role_and_delay() -> None:
    exc = GraphPermissionError("no", method="POST", url=URL, status=403, request_id="r1")
    body = error_response(exc, ReminderRequest(DEF, INST)).body
    assert "AccessReview.ReadWrite.All" in body["detail"]
    assert "24 hours" in body["detail"]
    assert body["requestId"] == "r1"


# Scope and options


def parse(body: dict[str, object]) -> ReminderRequest:
    return parse_reminder_request(json.dumps(body).encode(), "application/json")


def test_all_definitions_accepted() -> None:
    request = parse({"allDefinitions": True})
    assert request.all_definitions
    assert request.definition_id is None


def test_all_definitions_false_needs_definition() -> None:
    assert pointers(reject(json.dumps({"allDefinitions": False}).encode())) == ["#/definitionId"]


@pytest.mark.parametrize(
    "body",
    [
        {"allDefinitions": True, "definitionId": DEF},
        {"allDefinitions": True, "instanceId": INST},
    ],
)
def test_both_scopes_rejected(body: dict[str, object]) -> None:
    assert pointers(reject(json.dumps(body).encode())) == ["#/allDefinitions"]


@pytest.mark.parametrize("value", [1, "true", None, 0])
def test_all_definitions_must_be_boolean(value: object) -> None:
    body = json.dumps({"allDefinitions": value, "definitionId": DEF}).encode()
    assert "#/allDefinitions" in pointers(reject(body))


def test_options_parsed() -> None:
    request = parse({"definitionId": DEF, "endingWithinDays": 7, "dryRun": True, "force": True})
    assert request.ending_within_days == 7
    assert request.dry_run is True
    assert request.force is True


@pytest.mark.parametrize("value", [-1, 366, 7.0, 7.5, "7", True, None, [7]])
def test_ending_within_days_rejected(value: object) -> None:
    body = json.dumps({"definitionId": DEF, "endingWithinDays": value}).encode()
    assert pointers(reject(body)) == ["#/endingWithinDays"]


@pytest.mark.parametrize("name", ["dryRun", "force"])
@pytest.mark.parametrize("value", [1, "yes", None])
def test_flags_must_be_boolean(name: str, value: object) -> None:
    body = json.dumps({"definitionId": DEF, name: value}).encode()
    assert pointers(reject(body)) == [f"#/{name}"]


def test_would_send_counted() -> None:
    response = results_response([result(Outcome.WOULD_SEND)])
    assert response.status == 200
    assert response.body["summary"] == {"sent": 0, "skipped": 0, "failed": 0, "wouldSend": 1}


def test_unknown_fields_report_capped() -> None:
    body = json.dumps({"definitionId": DEF, **{f"f{n}": n for n in range(100)}}).encode()
    errors = reject(body).response.body["errors"]
    assert len(errors) == 21
    assert errors[-1]["detail"] == "80 more unknown fields."
