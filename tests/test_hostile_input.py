"""Hostile input: malformed requests, job ids and queue messages, and secrets in debug logs.

Every hostile HTTP request must get a 400, 413 or 415 with an RFC 9457 problem body that is
valid JSON, before any token request or Graph call. Every hostile queue message must be
dropped without a Graph call. With every logger at DEBUG, no log record may carry a token,
the identity header or the function key.
"""

from __future__ import annotations

import codecs
import importlib
import json
import logging
import uuid
from typing import Any

import azure.functions as func
import pytest

from emulators import Emulators
from emulators.sample import (
    GUEST_REVIEW_DEFINITION_ID,
    PRIVILEGED_IN_PROGRESS_INSTANCE_ID,
    PRIVILEGED_ROLE_DEFINITION_ID,
    SAMPLE_PENDING_INSTANCES,
)
from review_reminders.http_api import MAX_BODY_BYTES
from tests.functions_support import (
    FUNCTION_KEY,
    FUNCTIONS,
    InvocationContext,
    QueueOutput,
    body_of,
    call_http,
    get_job,
    registered,
    run_timer,
)

GUID = GUEST_REVIEW_DEFINITION_ID
UNKNOWN_JOB_ID = "0b7c5a3e-2f4d-4e6a-9c1b-8d2e7f6a5b4c"
PROBLEM_MEMBERS = ("type", "title", "status", "detail")
FULLWIDTH_DIGITS = str.maketrans({str(d): chr(0xFF10 + d) for d in range(10)})
ARABIC_INDIC_DIGITS = str.maketrans({str(d): chr(0x0660 + d) for d in range(10)})
# Nesting that Python's JSON parser rejects with RecursionError, within the 64 KiB limit.
DEEP_NESTING = 30_000


def encoded(value: object) -> bytes:
    return json.dumps(value).encode()


def with_definition(**fields: object) -> bytes:
    return encoded({"definitionId": GUID, **fields})


def with_raw_value(name: bytes, literal: bytes) -> bytes:
    """Return a body whose `name` is `literal` as written, which json.dumps cannot produce."""
    return b'{"definitionId": "' + GUID.encode() + b'", "' + name + b'": ' + literal + b"}"


# (case id, body, Content-Type or None, expected status)
HOSTILE_REQUESTS: list[tuple[str, bytes, str | None, int]] = [
    # Ids that could steer a Graph URL elsewhere
    ("traversal", encoded({"definitionId": "../../users"}), "application/json", 400),
    ("traversal-after-guid", encoded({"definitionId": GUID + "/../../users"}), None, 400),
    ("instance-traversal", with_definition(instanceId="../" + GUID), None, 400),
    ("encoded-slash", encoded({"definitionId": GUID + "%2F..%2Fusers"}), None, 400),
    ("double-encoded-slash", encoded({"definitionId": "..%252F..%252Fusers"}), None, 400),
    ("backslashes", encoded({"definitionId": "..\\..\\users"}), None, 400),
    ("guid-query", encoded({"definitionId": GUID + "?$select=id"}), None, 400),
    ("guid-fragment", encoded({"definitionId": GUID + "#x"}), None, 400),
    # GUIDs with something around or inside them
    ("guid-suffix", encoded({"definitionId": GUID + "0"}), None, 400),
    ("guid-prefix", encoded({"definitionId": "0" + GUID}), None, 400),
    ("leading-space", encoded({"definitionId": " " + GUID}), None, 400),
    ("trailing-newline", encoded({"definitionId": GUID + "\n"}), None, 400),
    ("inner-newline", encoded({"definitionId": GUID[:8] + "\n" + GUID[9:]}), None, 400),
    ("leading-tab", encoded({"definitionId": "\t" + GUID}), None, 400),
    ("braces", encoded({"definitionId": "{" + GUID + "}"}), None, 400),
    ("urn-prefix", encoded({"definitionId": "urn:uuid:" + GUID}), None, 400),
    ("no-dashes", encoded({"definitionId": GUID.replace("-", "")}), None, 400),
    ("null-byte-in-id", encoded({"definitionId": GUID + "\u0000"}), None, 400),
    ("lone-surrogate-in-id", encoded({"definitionId": GUID[:-1] + "\ud800"}), None, 400),
    # Look-alike characters
    ("fullwidth-digits", encoded({"definitionId": GUID.translate(FULLWIDTH_DIGITS)}), None, 400),
    (
        "arabic-indic-digits",
        encoded({"definitionId": GUID.translate(ARABIC_INDIC_DIGITS)}),
        None,
        400,
    ),
    ("unicode-hyphens", encoded({"definitionId": GUID.replace("-", "\u2010")}), None, 400),
    ("minus-signs", encoded({"definitionId": GUID.replace("-", "\u2212")}), None, 400),
    ("zero-width-space", encoded({"definitionId": GUID[:4] + "\u200b" + GUID[4:]}), None, 400),
    ("cyrillic-a", encoded({"definitionId": GUID.replace("a", "\u0430")}), None, 400),
    # Sizes and nesting
    ("over-64-kib", with_definition(pad="a" * MAX_BODY_BYTES), "application/json", 413),
    ("over-64-kib-whitespace", b" " * (MAX_BODY_BYTES + 1), "application/json", 413),
    ("deep-arrays", b"[" * DEEP_NESTING + b"]" * DEEP_NESTING, "application/json", 400),
    ("deep-objects", b'{"a":' * (DEEP_NESTING // 3) + b"1" + b"}" * (DEEP_NESTING // 3), None, 400),
    (
        "deep-in-field",
        with_raw_value(b"dryRun", b"[" * DEEP_NESTING + b"]" * DEEP_NESTING),
        None,
        400,
    ),
    ("long-field-name", encoded({"x" * 60_000: 1}), None, 400),
    ("many-fields", encoded({f"f{index}": 0 for index in range(4000)}), None, 400),
    # Duplicate and look-alike keys
    ("duplicate-keys", with_raw_value(b"definitionId", b'"../x"'), None, 400),
    ("case-variant-key", encoded({"DefinitionId": GUID}), None, 400),
    ("plural-key", with_definition(definitionIds=[GUID]), None, 400),
    ("proto-key", encoded({"__proto__": {"definitionId": GUID}}), None, 400),
    ("newline-in-key", encoded({"definition\nId": GUID}), None, 400),
    ("lone-surrogate-key", encoded({"\ud800": GUID}), None, 400),
    # Content types
    ("text-plain", with_definition(), "text/plain", 415),
    ("form-urlencoded", b"definitionId=" + GUID.encode(), "application/x-www-form-urlencoded", 415),
    ("multipart", with_definition(), "multipart/form-data; boundary=x", 415),
    ("xml", b"<definitionId>" + GUID.encode() + b"</definitionId>", "application/xml", 415),
    ("jsonp-lookalike", with_definition(), "application/jsonp", 415),
    ("json-then-junk-type", with_definition(), "application/json-seq", 415),
    # Wrong types
    ("number-id", encoded({"definitionId": 12345}), None, 400),
    ("array-id", encoded({"definitionId": [GUID]}), None, 400),
    ("object-id", encoded({"definitionId": {"id": GUID}}), None, 400),
    ("null-id", encoded({"definitionId": None}), None, 400),
    ("boolean-id", encoded({"definitionId": True}), None, 400),
    ("string-boolean", with_definition(dryRun="false"), None, 400),
    ("number-boolean", with_definition(force=1), None, 400),
    ("null-boolean", with_definition(force=None), None, 400),
    ("boolean-days", with_definition(endingWithinDays=True), None, 400),
    ("string-days", with_definition(endingWithinDays="7"), None, 400),
    ("fractional-days", with_definition(endingWithinDays=7.5), None, 400),
    ("negative-days", with_definition(endingWithinDays=-1), None, 400),
    ("huge-days", with_definition(endingWithinDays=10**30), None, 400),
    ("all-definitions-string", encoded({"allDefinitions": "true"}), None, 400),
    ("all-definitions-number", encoded({"allDefinitions": 1}), None, 400),
    ("all-definitions-and-id", encoded({"allDefinitions": True, "definitionId": GUID}), None, 400),
    # Numbers JSON does not have, or Python cannot read
    ("integer-5000-digits", with_raw_value(b"endingWithinDays", b"1" + b"0" * 5000), None, 400),
    ("float-overflow", with_raw_value(b"endingWithinDays", b"1e999"), None, 400),
    ("nan", with_raw_value(b"endingWithinDays", b"NaN"), None, 400),
    ("infinity", with_raw_value(b"endingWithinDays", b"Infinity"), None, 400),
    ("minus-infinity", b'{"endingWithinDays": -Infinity}', None, 400),
    # Encodings
    ("null-byte-after-body", with_definition() + b"\x00", None, 400),
    ("invalid-utf8", b'{"definitionId": "\xff\xfe"}', None, 400),
    ("overlong-utf8-slash", b'{"definitionId": "..\xc0\xaf.."}', None, 400),
    ("utf8-encoded-surrogate", b'{"definitionId": "\xed\xa0\x80"}', None, 400),
    (
        "utf16-le-with-bom",
        codecs.BOM_UTF16_LE + with_definition().decode().encode("utf-16-le"),
        None,
        400,
    ),
    ("utf16-be", with_definition().decode().encode("utf-16-be"), None, 400),
    ("utf32", with_definition().decode().encode("utf-32"), None, 400),
    (
        "utf16-declared",
        with_definition().decode().encode("utf-16"),
        "application/json; charset=utf-16",
        400,
    ),
    ("utf8-bom-bad-id", codecs.BOM_UTF8 + encoded({"definitionId": "../x"}), None, 400),
    ("two-boms", codecs.BOM_UTF8 * 2 + with_definition(), None, 400),
    # Shapes
    ("top-level-array", encoded([{"definitionId": GUID}]), None, 400),
    ("top-level-string", encoded(GUID), None, 400),
    ("top-level-number", b"1", None, 400),
    ("top-level-null", b"null", None, 400),
    ("empty-object", b"{}", None, 400),
    ("empty-body", b"", None, 400),
    ("whitespace-body", b" \r\n\t ", None, 400),
    ("trailing-garbage", with_definition() + b" x", None, 400),
    ("two-objects", with_definition() + with_definition(), None, 400),
    ("comment", with_raw_value(b"force", b"true /* x */"), None, 400),
    ("single-quotes", b"{'definitionId': '" + GUID.encode() + b"'}", None, 400),
]

HOSTILE_JOB_IDS: list[tuple[str, str]] = [
    ("traversal", "../x"),
    ("encoded-slashes", "..%2F..%2Freminders"),
    ("traversal-after-uuid", UNKNOWN_JOB_ID + "/../x"),
    ("braces", "{" + UNKNOWN_JOB_ID + "}"),
    ("urn-prefix", "urn:uuid:" + UNKNOWN_JOB_ID),
    ("no-dashes", UNKNOWN_JOB_ID.replace("-", "")),
    ("leading-space", " " + UNKNOWN_JOB_ID),
    ("trailing-newline", UNKNOWN_JOB_ID + "\n"),
    ("fullwidth-digits", UNKNOWN_JOB_ID.translate(FULLWIDTH_DIGITS)),
    ("unicode-hyphens", UNKNOWN_JOB_ID.replace("-", "\u2010")),
    ("null-byte", UNKNOWN_JOB_ID + "\u0000"),
    ("lone-surrogate", UNKNOWN_JOB_ID[:-1] + "\ud800"),
    ("empty", ""),
    ("10000-characters", "x" * 10_000),
    ("odata-injection", "' or PartitionKey ne '"),
    ("non-hex-digit", "00000000-0000-0000-0000-00000000000g"),
]

HOSTILE_MESSAGES: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("not-json", b"not json"),
    ("null", b"null"),
    ("array", b'["jobId"]'),
    ("string", b'"jobId"'),
    ("no-job-id", b"{}"),
    ("null-job-id", b'{"jobId": null}'),
    ("number-job-id", b'{"jobId": 5}'),
    ("object-job-id", b'{"jobId": {"jobId": "x"}}'),
    ("traversal-job-id", b'{"jobId": "../x"}'),
    ("newline-job-id", encoded({"jobId": UNKNOWN_JOB_ID + "\nforged log line"})),
    ("lone-surrogate-job-id", encoded({"jobId": "\ud800"})),
    ("invalid-utf8", b'{"jobId": "\xff"}'),
    ("nan-job-id", b'{"jobId": NaN}'),
    ("integer-5000-digits", b'{"jobId": 1' + b"0" * 5000 + b"}"),
    ("unknown-job", encoded({"jobId": UNKNOWN_JOB_ID})),
    ("utf16-unknown-job", json.dumps({"jobId": UNKNOWN_JOB_ID}).encode("utf-16")),
    ("huge-message", encoded({"jobId": "x" * 60_000})),
]


# Helpers


async def post_raw(body: bytes, content_type: str | None) -> func.HttpResponse:
    """POST to remind_reviewers with the function key in both places a caller may send it."""
    headers = {"x-functions-key": FUNCTION_KEY}
    if content_type is not None:
        headers["content-type"] = content_type
    request = func.HttpRequest(
        method="POST",
        url="http://localhost:7071/api/reminders?code=" + FUNCTION_KEY,
        headers=headers,
        params={"code": FUNCTION_KEY},
        body=body,
    )
    handler = registered("remind_reviewers").get_user_function()
    response: func.HttpResponse = await handler(
        request, InvocationContext("remind_reviewers"), QueueOutput()
    )
    return response


async def deliver(body: bytes) -> None:
    handler = registered("run_reminder_job").get_user_function()
    message = func.QueueMessage(id=str(uuid.uuid4()), body=body)
    await handler(message, InvocationContext("run_reminder_job"))


def reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def problem_of(response: func.HttpResponse) -> dict[str, Any]:
    """Parse a problem body strictly: UTF-8, no NaN or Infinity, an object."""
    body = json.loads(response.get_body().decode("utf-8"), parse_constant=reject_constant)
    assert isinstance(body, dict)
    return body


def assert_untouched(emu: Emulators) -> None:
    assert emu.graph.requests == []
    assert emu.identity.token_requests == []


# HTTP requests


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [pytest.param(body, kind, status, id=case) for case, body, kind, status in HOSTILE_REQUESTS],
)
async def test_hostile_request_rejected(
    emulators: Emulators, body: bytes, content_type: str | None, status: int
) -> None:
    response = await post_raw(body, content_type)
    problem = problem_of(response)

    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    assert all(member in problem for member in PROBLEM_MEMBERS)
    assert problem["status"] == status
    assert problem["instance"].startswith("urn:uuid:")
    assert_untouched(emulators)


def test_hostile_requests_counted() -> None:
    assert len(HOSTILE_REQUESTS) >= 40
    assert len({case for case, *_ in HOSTILE_REQUESTS}) == len(HOSTILE_REQUESTS)


# Job ids and queue messages


@pytest.mark.parametrize(
    "job_id", [pytest.param(job_id, id=case) for case, job_id in HOSTILE_JOB_IDS]
)
async def test_hostile_job_id_rejected(emulators: Emulators, job_id: str) -> None:
    response = await get_job(job_id)
    problem = problem_of(response)

    assert response.status_code == 400
    assert response.mimetype == "application/problem+json"
    assert problem["status"] == 400
    assert_untouched(emulators)


@pytest.mark.parametrize("body", [pytest.param(body, id=case) for case, body in HOSTILE_MESSAGES])
async def test_hostile_message_dropped(emulators: Emulators, body: bytes) -> None:
    await deliver(body)

    assert_untouched(emulators)


async def test_deep_message_dropped(emulators: Emulators) -> None:
    await deliver(b"[" * DEEP_NESTING + b"]" * DEEP_NESTING)

    assert_untouched(emulators)


# Secrets in logs


@pytest.fixture
def debug_everywhere(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture DEBUG records of every logger, including httpx, httpcore, azure and msal."""
    # Imported first, so that their loggers exist when the levels are set.
    for module in ("azure.data.tables", "azure.identity", "httpcore", "httpx", "msal"):
        importlib.import_module(module)
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def record_texts(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Return each record's message, arguments and extra fields, as a log shipper sends them."""
    return [f"{record.getMessage()} {vars(record)!r}" for record in caplog.records]


async def test_debug_logs_hold_no_secret(
    emulators: Emulators, debug_everywhere: pytest.LogCaptureFixture
) -> None:
    await call_http({"definitionId": GUID})
    await call_http(
        {
            "definitionId": PRIVILEGED_ROLE_DEFINITION_ID,
            "instanceId": PRIVILEGED_IN_PROGRESS_INSTANCE_ID,
        }
    )
    accepted = body_of(await call_http({"allDefinitions": True}))
    await get_job(accepted["jobId"])
    await run_timer()
    for _, body, content_type, _ in HOSTILE_REQUESTS[:20]:
        await post_raw(body, content_type)
    emulators.graph.deny_access()
    await call_http({"definitionId": GUID})
    secrets = [
        *emulators.identity.issued_tokens,
        emulators.identity_header,
        FUNCTION_KEY,
    ]
    texts = record_texts(debug_everywhere)

    assert emulators.identity.issued_tokens
    assert len(emulators.graph.reminders) == len(SAMPLE_PENDING_INSTANCES)
    assert any("httpx" in record.name for record in debug_everywhere.records)
    for secret in secrets:
        assert not [text for text in texts if secret in text], "a log record holds a secret"


# Registration


def test_no_function_is_anonymous() -> None:
    for name, function in FUNCTIONS.items():
        trigger = function.get_trigger().get_dict_repr()
        assert trigger.get("authLevel") != func.AuthLevel.ANONYMOUS, name


def test_http_functions_need_function_key() -> None:
    triggers = [function.get_trigger().get_dict_repr() for function in FUNCTIONS.values()]
    http_triggers = [trigger for trigger in triggers if trigger["type"] == "httpTrigger"]
    levels = {trigger["authLevel"] for trigger in http_triggers}

    assert len(http_triggers) == 3
    assert levels == {func.AuthLevel.FUNCTION}
