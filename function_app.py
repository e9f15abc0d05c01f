"""Azure Functions triggers: remind access review reviewers on request and on a schedule.

This module only parses input, calls the `review_reminders` package and maps the outcome to a
response. It reads no settings and opens no connection at import time: a failing import would
leave the host with no functions at all.
"""

from __future__ import annotations

import logging

import azure.functions as func

from review_reminders import http_api
from review_reminders.errors import ReminderError, RunFailedError
from review_reminders.results import Outcome, Summary

logger = logging.getLogger("review_reminders.function_app")

# Tokens never reach these loggers' INFO lines, but request lines with full URLs add noise.
for _name in ("httpx", "httpcore", "azure", "msal"):
    logging.getLogger(_name).setLevel(logging.WARNING)

# FUNCTION: every call needs a function key or, with Entra authentication on, a valid token.
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

_CALLER_HEADERS = ("x-ms-workflow-run-id", "x-ms-client-tracking-id")


def _caller(req: func.HttpRequest) -> str | None:
    for name in _CALLER_HEADERS:
        value = req.headers.get(name)
        if value:
            # Printable ASCII only, so a caller cannot forge log lines.
            return "".join(ch for ch in value[:128] if ch.isascii() and ch.isprintable())
    return None


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
        return _to_http(exc.response)

    ids = {"definition_id": request.definition_id, "instance_id": request.instance_id}
    logger.info(
        "Reminder request for definition %s, instance %s, caller %s",
        request.definition_id,
        request.instance_id or "(all in progress)",
        _caller(req) or "(unknown)",
        extra={**ids, "invocation_id": invocation_id, "caller": _caller(req)},
    )
    from review_reminders import jobs, runtime

    try:
        graph = runtime.get_graph_client()
        if request.instance_id:
            results = [
                await jobs.remind_instance(graph, request.definition_id, request.instance_id)
            ]
        else:
            results = await jobs.remind_definition(graph, request.definition_id)
    except ReminderError as exc:
        logger.error(
            "Reminder request failed: %s", exc, extra={**ids, "invocation_id": invocation_id}
        )
        return _to_http(http_api.error_response(exc, request, invocation_id))
    except Exception:
        logger.exception(
            "Reminder request failed unexpectedly", extra={**ids, "invocation_id": invocation_id}
        )
        return _to_http(http_api.error_response(Exception(), request, invocation_id))

    summary = Summary.of(results)
    logger.info(
        "Reminder request done: %d sent, %d skipped, %d failed",
        summary.sent,
        summary.skipped,
        summary.failed,
        extra={**ids, "invocation_id": invocation_id, **summary.to_dict()},
    )
    return _to_http(http_api.results_response(results, invocation_id))


@app.function_name("remind_reviewers_on_schedule")
@app.timer_trigger(
    schedule="%REMINDER_SCHEDULE%", arg_name="timer", run_on_startup=False, use_monitor=True
)
async def remind_reviewers_on_schedule(timer: func.TimerRequest) -> None:
    """Remind the reviewers of every in-progress instance of REMINDER_DEFINITION_IDS, or of all.

    A past-due run (the app was down at the scheduled time) runs once. After every target was
    tried, the run raises if any reminder failed, so the invocation shows as failed.
    """
    from review_reminders import jobs, runtime

    settings = runtime.get_settings()
    scope = ", ".join(settings.definition_ids) or "all definitions"
    logger.info(
        "Scheduled reminder run started for %s%s",
        scope,
        " (past due)" if timer.past_due else "",
        extra={"definition_ids": settings.definition_ids, "past_due": timer.past_due},
    )
    results = await jobs.remind_definitions(runtime.get_graph_client(), settings.definition_ids)

    summary = Summary.of(results)
    failed = [
        f"{r.definition_id}/{r.instance_id or '*'}" for r in results if r.outcome is Outcome.FAILED
    ]
    logger.info(
        "Scheduled reminder run done: %d sent, %d skipped, %d failed%s",
        summary.sent,
        summary.skipped,
        summary.failed,
        f" ({', '.join(failed[:20])}{' ...' if len(failed) > 20 else ''})" if failed else "",
        extra={**summary.to_dict(), "failed_ids": failed},
    )
    if failed:
        raise RunFailedError(failed, len(results))
