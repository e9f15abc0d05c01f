"""Azure Functions triggers: remind access review reviewers on request and on a schedule.

This module only parses input, calls the `review_reminders` package and maps the outcome to a
response. It reads no settings and opens no connection at import time: a failing import would
leave the host with no functions at all.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from urllib.parse import quote, urlsplit

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

# Long requests become jobs on this queue in the host's own storage account.
JOBS_QUEUE = "reminder-jobs"
OPENAPI_PATH = Path(__file__).resolve().parent / "review_reminders" / "openapi.json"


def _header(req: func.HttpRequest, name: str) -> str | None:
    value = req.headers.get(name)
    if not value:
        return None
    # Printable ASCII only, so a caller cannot forge log lines or audit rows.
    return "".join(ch for ch in value[:128] if ch.isascii() and ch.isprintable()) or None


def _to_http(response: http_api.ApiResponse) -> func.HttpResponse:
    return func.HttpResponse(
        body=response.encode(),
        status_code=response.status,
        headers=response.headers,
        mimetype=response.content_type,
        charset="utf-8",
    )


def _status_url(req: func.HttpRequest, job_id: str) -> str:
    """Build the absolute URL to poll a job, keeping the caller's function key.

    Logic Apps and Power Automate poll the Location header as given, without the key header
    they sent first, so the key goes in the `code` parameter, as Durable Functions does.
    """
    parts = urlsplit(req.url)
    url = f"{parts.scheme}://{parts.netloc}/api/reminders/jobs/{job_id}"
    key = req.params.get("code") or req.headers.get("x-functions-key")
    return f"{url}?code={quote(key, safe='')}" if key else url


@app.function_name("remind_reviewers")
@app.route(route="reminders", methods=[func.HttpMethod.POST], auth_level=func.AuthLevel.FUNCTION)
@app.queue_output(arg_name="jobs", queue_name=JOBS_QUEUE, connection="AzureWebJobsStorage")
async def remind_reviewers(
    req: func.HttpRequest, context: func.Context, jobs: func.Out[str]
) -> func.HttpResponse:
    """Remind the reviewers of one instance, one definition, or every definition."""
    invocation_id = context.invocation_id
    try:
        request = http_api.parse_reminder_request(req.get_body(), req.headers.get("content-type"))
    except http_api.InvalidRequestError as exc:
        logger.info("Rejected a reminder request: %s", exc, extra={"invocation_id": invocation_id})
        exc.response.body["instance"] = f"urn:uuid:{invocation_id}"
        return _to_http(exc.response)

    from review_reminders import service
    from review_reminders.ledger import Caller

    caller = Caller(
        trigger="http",
        invocation_id=invocation_id,
        workflow_run_id=_header(req, "x-ms-workflow-run-id"),
        client_tracking_id=_header(req, "x-ms-client-tracking-id"),
    )
    ids = {"definition_id": request.definition_id, "instance_id": request.instance_id}
    logger.info(
        "Reminder request for %s, caller %s%s",
        service.describe_scope(request),
        caller.workflow_run_id or caller.client_tracking_id or "(unknown)",
        " (dry run)" if request.dry_run else "",
        extra={**ids, "invocation_id": invocation_id, "caller": caller.workflow_run_id},
    )
    try:
        if await service.needs_queue(request):
            handover = await service.hand_over(request, caller)
            jobs.set(json.dumps({"jobId": handover.job_id}))
            url = _status_url(req, handover.job_id)
            return _to_http(
                http_api.accepted_response(handover.job_id, url, service.JOB_POLL_INTERVAL_S)
            )
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


@app.function_name("get_reminder_job")
@app.route(route="reminders/jobs/{jobId}", methods=[func.HttpMethod.GET])
async def get_reminder_job(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    """Report a long job: 202 while it runs, 200 with its result when it is done."""
    from review_reminders import service

    job_id = req.route_params.get("jobId", "")
    try:
        response = await service.job_status_response(
            job_id, _status_url(req, job_id), context.invocation_id
        )
    except ReminderError as exc:
        logger.error(
            "Reading job %s failed: %s",
            job_id[:40],
            exc,
            extra={"invocation_id": context.invocation_id},
        )
        response = http_api.error_response(
            exc, http_api.ReminderRequest(None), context.invocation_id
        )
    return _to_http(response)


@app.function_name("run_reminder_job")
@app.queue_trigger(arg_name="message", queue_name=JOBS_QUEUE, connection="AzureWebJobsStorage")
async def run_reminder_job(message: func.QueueMessage, context: func.Context) -> None:
    """Run a long job that the HTTP function handed over, and store its result."""
    from review_reminders import service

    try:
        job_id = str(json.loads(message.get_body())["jobId"])
    except (ValueError, KeyError, TypeError, RecursionError):
        # Retrying cannot fix a malformed message, so it is dropped here, not raised.
        logger.error(
            "Dropped a malformed job message %s", message.id, extra={"message_id": message.id}
        )
        return
    await service.run_job(job_id, context.invocation_id)


@app.function_name("get_openapi")
@app.route(route="openapi.json", methods=[func.HttpMethod.GET])
def get_openapi(req: func.HttpRequest) -> func.HttpResponse:
    """Serve the OpenAPI 2.0 description of this API."""
    return func.HttpResponse(
        OPENAPI_PATH.read_bytes(), mimetype="application/json", charset="utf-8"
    )


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
