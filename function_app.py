"""Azure Functions triggers: remind access review reviewers on request and on a schedule.

This module only parses input, calls the `review_reminders` package and maps the outcome to a
response. It reads no settings and opens no connection at import time: a failing import would
leave the host with no functions at all.
"""

from __future__ import annotations

import logging

import azure.functions as func

from review_reminders import http_api
from review_reminders.errors import ReminderError
from review_reminders.results import Summary

logger = logging.getLogger("review_reminders.function_app")

# Tokens never reach these loggers' INFO lines, but request lines with full URLs add noise.
for _name in ("httpx", "httpcore", "azure", "msal"):
    logging.getLogger(_name).setLevel(logging.WARNING)

# FUNCTION: every call needs a function key or, with Entra authentication on, a valid token.
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

_CALLER_HEADERS = ("x-ms-workflow-run-id", "x-ms-client-tracking-id")


def _header(req: func.HttpRequest, name: str) -> str | None:
    value = req.headers.get(name)
    if not value:
        return None
    # Printable ASCII only, so a caller cannot forge log lines or audit rows.
    return "".join(ch for ch in value[:128] if ch.isascii() and ch.isprintable()) or None


def _caller(req: func.HttpRequest) -> str | None:
    for name in _CALLER_HEADERS:
        value = _header(req, name)
        if value:
            return value
    return None


def _describe_scope(request: http_api.ReminderRequest) -> str:
    if request.definition_id is None:
        return "all definitions"
    if request.instance_id is None:
        return f"definition {request.definition_id}"
    return f"instance {request.instance_id} of definition {request.definition_id}"


def _to_http(response: http_api.ApiResponse) -> func.HttpResponse:
    return func.HttpResponse(
        body=response.encode(),
        status_code=response.status,
        headers=response.headers,
        mimetype=response.content_type,
        charset="utf-8",
    )


@app.function_name("remind_reviewers")
@app.route(route="reminders", methods=[func.HttpMethod.POST], auth_level=func.AuthLevel.FUNCTION)
async def remind_reviewers(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Remind the reviewers of one instance, or of every in-progress instance of a definition."""
    invocation_id = context.invocation_id
    try:
        request = http_api.parse_reminder_request(req.get_body(), req.headers.get("content-type"))
    except http_api.InvalidRequestError as exc:
        logger.info("Rejected a reminder request: %s", exc, extra={"invocation_id": invocation_id})
        exc.response.body["instance"] = f"urn:uuid:{invocation_id}"
        return _to_http(exc.response)

    ids = {"definition_id": request.definition_id, "instance_id": request.instance_id}
    logger.info(
        "Reminder request for %s, caller %s%s",
        _describe_scope(request),
        _caller(req) or "(unknown)",
        " (dry run)" if request.dry_run else "",
        extra={**ids, "invocation_id": invocation_id, "caller": _caller(req)},
    )
    from review_reminders import service
    from review_reminders.ledger import Caller

    caller = Caller(
        trigger="http",
        invocation_id=invocation_id,
        workflow_run_id=_header(req, "x-ms-workflow-run-id"),
        client_tracking_id=_header(req, "x-ms-client-tracking-id"),
    )
    try:
        results = await service.run_request(request, caller)
    except ReminderError as exc:
        response = http_api.error_response(exc, request, invocation_id)
        # A missing or finished review is the caller's to fix; the rest is the app's or Graph's.
        level = logging.WARNING if response.status < 500 else logging.ERROR
        logger.log(
            level, "Reminder request failed: %s", exc, extra={**ids, "invocation_id": invocation_id}
        )
        return _to_http(response)
    except Exception:
        logger.exception(
            "Reminder request failed unexpectedly", extra={**ids, "invocation_id": invocation_id}
        )
        return _to_http(http_api.error_response(Exception(), request, invocation_id))

    summary = Summary.of(results)
    logger.info(
        "Reminder request done: %d sent, %d would send, %d skipped, %d failed",
        summary.sent,
        summary.would_send,
        summary.skipped,
        summary.failed,
        extra={**ids, "invocation_id": invocation_id, **summary.to_dict()},
    )
    return _to_http(http_api.results_response(results, invocation_id))


@app.function_name("remind_reviewers_on_schedule")
@app.timer_trigger(
    schedule="%REMINDER_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True
)
async def remind_reviewers_on_schedule(timer: func.TimerRequest, context: func.Context) -> None:
    """Remind the reviewers of every in-progress instance of REMINDER_DEFINITION_IDS, or of all.

    A past-due run (the app was down at the scheduled time) runs once. After every target was
    tried, the run raises if any reminder failed, so the invocation shows as failed.
    """
    from review_reminders import service

    await service.run_schedule(past_due=timer.past_due, invocation_id=context.invocation_id)
