"""The HTTP API's contract: request validation, and results and errors as HTTP responses.

Error bodies are RFC 9457 problem details (`application/problem+json`). This module uses the
standard library only, so that importing the function app stays cheap.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import (
    REQUIRED_PERMISSION,
    ConfigurationError,
    GraphError,
    GraphNotFoundError,
    GraphPermissionError,
    GraphThrottledError,
    InstanceNotActiveError,
    LedgerUnavailableError,
    TokenError,
)
from .results import Outcome, ReminderResult, Summary
from .settings import is_guid

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
JSON_CONTENT_TYPE = "application/json"
PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:access-review-reminders:problem:"
# Sent with a 503 when Graph throttled without saying for how long.
DEFAULT_RETRY_AFTER_S = 30

REQUEST_FIELDS = (
    "definitionId",
    "instanceId",
    "allDefinitions",
    "endingWithinDays",
    "dryRun",
    "force",
)
EXAMPLE_BODY = (
    '{"definitionId": "<GUID>", "instanceId": "<GUID, optional>"} or {"allDefinitions": true}'
)
MAX_ENDING_WITHIN_DAYS = 365
# Unknown field names are echoed back in errors at most this long, and at most this many.
MAX_ECHOED_NAME_CHARS = 64
MAX_REPORTED_UNKNOWN_FIELDS = 20
# Retry-After passed on to callers is capped, whatever Graph sent.
MAX_RETRY_AFTER_S = 3600


@dataclass(frozen=True)
class ReminderRequest:
    """A validated request: its scope (one definition, one instance, or all) and its options."""

    definition_id: str | None
    instance_id: str | None = None
    ending_within_days: int | None = None
    dry_run: bool = False
    force: bool = False

    @property
    def all_definitions(self) -> bool:
        return self.definition_id is None

    def to_dict(self) -> dict[str, Any]:
        """Return the request as the API's JSON body, to store with a long job."""
        body: dict[str, Any] = (
            {"allDefinitions": True}
            if self.definition_id is None
            else {"definitionId": self.definition_id}
        )
        if self.instance_id:
            body["instanceId"] = self.instance_id
        if self.ending_within_days is not None:
            body["endingWithinDays"] = self.ending_within_days
        body.update(dryRun=self.dry_run, force=self.force)
        return body

    @classmethod
    def from_dict(cls, body: dict[str, Any]) -> ReminderRequest:
        """Validate a stored request again, exactly as a new one."""
        return parse_reminder_request(json.dumps(body).encode("utf-8"), JSON_CONTENT_TYPE)


@dataclass(frozen=True)
class ApiResponse:
    """An HTTP response, independent of the Functions types so that it is easy to test."""

    status: int
    body: dict[str, Any]
    content_type: str = JSON_CONTENT_TYPE
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        # ASCII escapes: a lone surrogate echoed from a request cannot break the encoding.
        return json.dumps(self.body, ensure_ascii=True).encode("ascii")


class InvalidRequestError(Exception):
    """The request cannot be accepted; `response` is the problem to send back."""

    def __init__(self, response: ApiResponse) -> None:
        self.response = response
        super().__init__(response.body.get("detail", "invalid request"))


def problem(
    status: int,
    kind: str,
    title: str,
    detail: str,
    *,
    invocation_id: str | None = None,
    headers: dict[str, str] | None = None,
    **members: Any,
) -> ApiResponse:
    """Build an RFC 9457 problem response; `members` become extension members of the body."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_PREFIX + kind,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if invocation_id:
        body["instance"] = f"urn:uuid:{invocation_id}"
    body.update({name: value for name, value in members.items() if value is not None})
    return ApiResponse(status, body, PROBLEM_CONTENT_TYPE, dict(headers or {}))


def _invalid(detail: str, errors: list[dict[str, str]] | None = None) -> InvalidRequestError:
    return InvalidRequestError(
        problem(400, "invalid-request", "The request is invalid", detail, errors=errors)
    )


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for key, value in pairs:
        if key in body:
            raise _invalid(f"The JSON object has the member {key!r} more than once.")
        body[key] = value
    return body


def _reject_constant(name: str) -> Any:
    raise _invalid(f"The JSON body contains {name}, which is not valid JSON.")


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _decode_json(body: bytes, content_type: str | None) -> Any:
    if len(body) > MAX_BODY_BYTES:
        raise InvalidRequestError(
            problem(
                413,
                "body-too-large",
                "The request body is too large",
                f"The body has {len(body)} bytes; the limit is {MAX_BODY_BYTES}.",
            )
        )
    media_type = _media_type(content_type)
    if media_type and media_type != JSON_CONTENT_TYPE and not media_type.endswith("+json"):
        raise InvalidRequestError(
            problem(
                415,
                "unsupported-media-type",
                "The request body must be JSON",
                f"Content-Type is {media_type!r}; send {JSON_CONTENT_TYPE}.",
            )
        )
    if not body.strip():
        raise _invalid(f"The request body is empty. Send a JSON object: {EXAMPLE_BODY}.")
    try:
        text = body.decode("utf-8-sig")
        return json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except UnicodeDecodeError:
        raise _invalid("The request body is not valid UTF-8.") from None
    except json.JSONDecodeError as exc:
        raise _invalid(
            f"The request body is not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}."
        ) from None
    except RecursionError:
        raise _invalid("The JSON body is nested too deeply.") from None
    except ValueError:
        # Python refuses integers of more than 4300 digits.
        raise _invalid("The JSON body contains a number that is too long.") from None


def _check_id(body: dict[str, Any], name: str, errors: list[dict[str, str]]) -> str | None:
    if name not in body:
        return None
    value = body[name]
    if not isinstance(value, str):
        errors.append({"pointer": f"#/{name}", "detail": f"{name} must be a string (a GUID)."})
    elif not is_guid(value):
        errors.append(
            {
                "pointer": f"#/{name}",
                "detail": f"{name} must be a GUID such as '0c3b3a47-4a55-4c7e-9d5a-2f6b8e1d7c90'.",
            }
        )
    else:
        return value.lower()
    return None


def parse_reminder_request(body: bytes, content_type: str | None) -> ReminderRequest:
    """Validate a request body, raising InvalidRequestError that lists every problem at once."""
    data = _decode_json(body, content_type)
    if not isinstance(data, dict):
        raise _invalid(f"The request body must be a JSON object: {EXAMPLE_BODY}.")

    errors: list[dict[str, str]] = []
    unknown = [name for name in data if name not in REQUEST_FIELDS]
    for name in unknown[:MAX_REPORTED_UNKNOWN_FIELDS]:
        errors.append(
            {
                "pointer": f"#/{_escape_pointer(name[:MAX_ECHOED_NAME_CHARS])}",
                "detail": f"Unknown field {name[:MAX_ECHOED_NAME_CHARS]!r}. Accepted fields: "
                + ", ".join(REQUEST_FIELDS)
                + ".",
            }
        )
    if len(unknown) > MAX_REPORTED_UNKNOWN_FIELDS:
        errors.append(
            {
                "pointer": "#",
                "detail": f"{len(unknown) - MAX_REPORTED_UNKNOWN_FIELDS} more unknown fields.",
            }
        )
    definition_id = _check_id(data, "definitionId", errors)
    instance_id = _check_id(data, "instanceId", errors)
    all_definitions = _check_bool(data, "allDefinitions", errors)
    dry_run = _check_bool(data, "dryRun", errors)
    force = _check_bool(data, "force", errors)
    ending_within_days = _check_days(data, errors)

    # The scope is explicit, so an empty or mistyped body never reminds the whole tenant.
    if all_definitions and ("definitionId" in data or "instanceId" in data):
        errors.append(
            {
                "pointer": "#/allDefinitions",
                "detail": "allDefinitions cannot be combined with definitionId or instanceId.",
            }
        )
    elif not all_definitions and "definitionId" not in data:
        detail = "definitionId is required, unless allDefinitions is true"
        if "instanceId" in data:
            detail += ": an instance is named by its definition and instance ids together"
        errors.append({"pointer": "#/definitionId", "detail": detail + "."})

    if errors:
        raise _invalid(
            f"{len(errors)} field(s) are invalid. Send a JSON object: {EXAMPLE_BODY}.", errors
        )
    return ReminderRequest(
        None if all_definitions else definition_id,
        instance_id,
        ending_within_days=ending_within_days,
        dry_run=dry_run,
        force=force,
    )


def _check_bool(body: dict[str, Any], name: str, errors: list[dict[str, str]]) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        errors.append({"pointer": f"#/{name}", "detail": f"{name} must be true or false."})
        return False
    return value


def _check_days(body: dict[str, Any], errors: list[dict[str, str]]) -> int | None:
    if "endingWithinDays" not in body:
        return None
    value = body["endingWithinDays"]
    # bool is a subclass of int in Python, and true is not a number of days.
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not (0 <= value <= MAX_ENDING_WITHIN_DAYS)
    ):
        errors.append(
            {
                "pointer": "#/endingWithinDays",
                "detail": f"endingWithinDays must be a whole number from 0 to "
                f"{MAX_ENDING_WITHIN_DAYS}.",
            }
        )
        return None
    return value


def _escape_pointer(name: str) -> str:
    # JSON Pointer (RFC 6901) escapes "~" and "/" in member names.
    return name.replace("~", "~0").replace("/", "~1")


def results_response(
    results: Sequence[ReminderResult], invocation_id: str | None = None
) -> ApiResponse:
    """Map results to 200 (nothing failed), 207 (some sent, some failed) or a problem.

    When nothing was sent and something failed, the response is 503 with Retry-After if every
    failure was throttling, and 502 otherwise. Each carries the results, too.
    """
    summary = Summary.of(results)
    items = [result.to_dict() for result in results]
    if summary.failed == 0:
        return ApiResponse(200, {"summary": summary.to_dict(), "results": items})
    if summary.sent > 0:
        return ApiResponse(207, {"summary": summary.to_dict(), "results": items})

    failures = [result for result in results if result.outcome is Outcome.FAILED]
    if all(result.throttled for result in failures):
        retry_after = _retry_after_header(max((r.retry_after_s or 0.0) for r in failures) or None)
        return problem(
            503,
            "graph-throttled",
            "Graph is throttling the app",
            f"Graph kept throttling the reminders past the retry budget. Try again in "
            f"{retry_after} s.",
            invocation_id=invocation_id,
            headers={"Retry-After": retry_after},
            summary=summary.to_dict(),
            results=items,
        )
    return problem(
        502,
        "reminders-failed",
        "No reminder could be sent",
        f"{summary.failed} reminder(s) failed and none was sent. Each result gives the reason "
        "and Graph's request-id.",
        invocation_id=invocation_id,
        summary=summary.to_dict(),
        results=items,
    )


def _retry_after_header(seconds: float | None) -> str:
    if not seconds:
        return str(DEFAULT_RETRY_AFTER_S)
    return str(min(MAX_RETRY_AFTER_S, max(1, math.ceil(seconds))))


def _partial_members(exc: BaseException) -> dict[str, Any]:
    # A job stopped midway still lists what it sent, so that a retry can leave those out.
    results = getattr(exc, "partial_results", None)
    if not results:
        return {}
    return {
        "summary": Summary.of(results).to_dict(),
        "results": [result.to_dict() for result in results],
    }


def error_response(
    exc: BaseException, request: ReminderRequest, invocation_id: str | None = None
) -> ApiResponse:
    """Map an error raised by a job to its problem response. The detail never has a token."""
    if isinstance(exc, GraphNotFoundError):
        target = f"definition {request.definition_id}" if request.definition_id else "definition"
        if request.instance_id:
            target = f"instance {request.instance_id} of {target}"
        return problem(
            404,
            "not-found",
            "The access review was not found",
            f"Graph has no access review {target}.",
            invocation_id=invocation_id,
            requestId=exc.request_id,
        )
    if isinstance(exc, InstanceNotActiveError):
        return problem(
            409,
            "instance-not-active",
            "The access review instance is not in progress",
            str(exc),
            invocation_id=invocation_id,
            instanceStatus=exc.status,
        )
    partial = _partial_members(exc)
    if isinstance(exc, GraphPermissionError):
        return problem(
            502,
            "graph-permission-denied",
            f"Graph denied the app; it needs {REQUIRED_PERMISSION}"
            if exc.status == 403
            else "Graph rejected the app's token",
            str(exc),
            invocation_id=invocation_id,
            requestId=exc.request_id,
            **partial,
        )
    if isinstance(exc, TokenError):
        return problem(
            502,
            "token-unavailable",
            "The managed identity did not issue a token",
            str(exc),
            invocation_id=invocation_id,
            **partial,
        )
    if isinstance(exc, LedgerUnavailableError):
        return problem(
            503,
            "ledger-unavailable",
            "The reminder ledger is unavailable",
            str(exc),
            invocation_id=invocation_id,
            headers={"Retry-After": str(DEFAULT_RETRY_AFTER_S)},
            **partial,
        )
    if isinstance(exc, GraphThrottledError):
        retry_after = _retry_after_header(exc.retry_after_s)
        return problem(
            503,
            "graph-throttled",
            "Graph is throttling the app",
            str(exc),
            invocation_id=invocation_id,
            headers={"Retry-After": retry_after},
            requestId=exc.request_id,
        )
    if isinstance(exc, GraphError):
        return problem(
            502,
            "graph-error",
            "Graph returned an error",
            str(exc),
            invocation_id=invocation_id,
            requestId=exc.request_id,
        )
    if isinstance(exc, ConfigurationError):
        return problem(
            500,
            "invalid-configuration",
            "The function app's settings are invalid",
            str(exc),
            invocation_id=invocation_id,
        )
    return problem(
        500,
        "internal-error",
        "Internal error",
        "The function failed unexpectedly. Its log has the details under this invocation id.",
        invocation_id=invocation_id,
    )


def accepted_response(job_id: str, status_url: str, retry_after_s: int) -> ApiResponse:
    """Build the 202 response for a job handed to the queue, with where to poll for its result."""
    return ApiResponse(
        202,
        {"jobId": job_id, "status": "running", "statusUrl": f"/api/reminders/jobs/{job_id}"},
        headers={"Location": status_url, "Retry-After": str(retry_after_s)},
    )


def job_response(
    job_id: str,
    status: str,
    body: dict[str, Any] | None,
    status_url: str,
    retry_after_s: int,
) -> ApiResponse:
    """Build the response to a poll: 202 while the job runs, 200 with its final body after."""
    if body is None:
        return accepted_response(job_id, status_url, retry_after_s)
    return ApiResponse(200, {**body, "jobId": job_id, "status": status})
