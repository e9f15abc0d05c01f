"""The work behind each trigger: a reminder request, a long job, or the scheduled run.

The triggers in function_app.py parse their input and map the outcome to a response. The
choice of job, its options and the run's summary line live here.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from . import runtime
from .errors import LedgerUnavailableError, ReminderError, RunFailedError
from .http_api import ApiResponse, ReminderRequest, error_response, job_response, problem
from .job_store import STATUS_FAILED, STATUS_PARTIALLY_SUCCEEDED, STATUS_SUCCEEDED, is_uuid
from .jobs import ReminderRun, RunOptions
from .ledger import Caller
from .results import Outcome, ReminderResult, Summary

logger = logging.getLogger(__name__)

# Failed ids listed in a summary log line; the rest are counted.
MAX_LOGGED_FAILURES = 20
# Estimated time of one target (pending check and reminder) when Graph throttles moderately.
# It sizes the synchronous path: a definition with more targets than the budget allows is run
# from the queue. NOTE: an estimate; a heavily throttled tenant can still take longer.
ESTIMATED_SECONDS_PER_TARGET = 0.5
# How often callers should poll a running job, in seconds.
JOB_POLL_INTERVAL_S = 10
# A delivery that began a job this long ago has ended: the function timeout is 10 minutes.
JOB_DELIVERY_LEASE_S = 11 * 60
# A job still running after this long is reported as failed, because its queue message was
# lost: host.json allows 3 deliveries of at most 10 minutes each, 30 s apart.
JOB_STALE_AFTER_S = 40 * 60


@dataclass(frozen=True)
class Handover:
    """A request handed to the queue: poll `job_id` for its result."""

    job_id: str


async def _count_targets(definition_id: str, limit: int) -> int:
    """Count the in-progress instances of a definition, stopping once `limit` is reached."""
    count = 0
    async for _ in runtime.get_graph_client().list_instances(definition_id):
        count += 1
        if count >= limit:
            break
    return count


async def needs_queue(request: ReminderRequest) -> bool:
    """Tell whether a request cannot finish within the synchronous budget.

    One instance never needs the queue, and the whole tenant always does. For one definition,
    its in-progress instances are counted first. Raises GraphNotFoundError for a definition
    that does not exist, before any job is created.
    """
    if request.instance_id is not None:
        return False
    if request.definition_id is None:
        return True
    limit = int(runtime.get_settings().sync_budget_s / ESTIMATED_SECONDS_PER_TARGET)
    return await _count_targets(request.definition_id, limit + 1) > limit


async def hand_over(request: ReminderRequest, caller: Caller) -> Handover:
    """Create a job for the request; the caller then puts its id on the jobs queue."""
    job_id = str(uuid.uuid4())
    await runtime.get_job_store().create(job_id, request.to_dict(), caller)
    logger.info(
        "Reminder request handed to the queue as job %s",
        job_id,
        extra={"job_id": job_id, "invocation_id": caller.invocation_id},
    )
    return Handover(job_id)


def job_status(results: list[ReminderResult]) -> str:
    """Name a finished job's status from its results."""
    summary = Summary.of(results)
    if summary.failed == 0:
        return STATUS_SUCCEEDED
    if summary.sent or summary.would_send:
        return STATUS_PARTIALLY_SUCCEEDED
    return STATUS_FAILED


async def run_job(job_id: str, invocation_id: str | None) -> None:
    """Run a job taken from the queue, and store its final body for the callers who poll.

    A job that is unknown or already done is left alone, so a message delivered twice does
    nothing. Errors that stop a run (permission, token) complete the job as failed, because
    retrying would fail the same way. A storage failure is raised, so the queue retries it.
    """
    store = runtime.get_job_store()
    begun = await store.begin(job_id, lease_s=JOB_DELIVERY_LEASE_S)
    if begun is None:
        logger.warning(
            "Job %r is unknown, done, or running in another delivery; nothing to do",
            job_id[:64],
            extra={"job_id": job_id},
        )
        return
    job, deliveries = begun
    request = ReminderRequest.from_dict(dict(job.request))
    if deliveries > 1 and request.force:
        # An earlier delivery may have sent some reminders before it died. Without force,
        # the cooldown in the ledger keeps those reviewers from a second reminder.
        request = replace(request, force=False)
    caller = Caller(
        trigger="queue",
        invocation_id=invocation_id,
        workflow_run_id=job.caller.workflow_run_id,
        client_tracking_id=job.caller.client_tracking_id,
    )
    try:
        results = await run_request(request, caller)
    except LedgerUnavailableError:
        raise
    except ReminderError as exc:
        logger.error("Job %s failed: %s", job_id, exc, extra={"job_id": job_id})
        await store.complete(job_id, STATUS_FAILED, failed_job_body(exc, request, invocation_id))
        return
    body = {"summary": Summary.of(results).to_dict(), "results": [r.to_dict() for r in results]}
    await store.complete(job_id, job_status(results), body)


def failed_job_body(
    exc: ReminderError, request: ReminderRequest, invocation_id: str | None
) -> dict[str, Any]:
    """Build the stored body of a job that stopped on an error: what it did, and the problem."""
    results = list(exc.partial_results or [])
    problem_body = error_response(exc, request, invocation_id).body
    problem_body.pop("summary", None)
    problem_body.pop("results", None)
    return {
        "summary": Summary.of(results).to_dict(),
        "results": [result.to_dict() for result in results],
        "error": problem_body,
    }


def is_stale(created_at: str, now: float) -> bool:
    """Tell whether a job created at `created_at` (ISO 8601) has run for too long."""
    try:
        created = datetime.fromisoformat(created_at).timestamp()
    except ValueError:
        return False
    return now - created > JOB_STALE_AFTER_S


async def run_request(request: ReminderRequest, caller: Caller) -> list[ReminderResult]:
    """Run the job that a validated HTTP request names, with the app's settings."""
    settings = runtime.get_settings()
    options = RunOptions(
        ending_within_days=request.ending_within_days,
        dry_run=request.dry_run,
        pending_check=settings.pending_check,
        cooldown_s=settings.cooldown_s,
        force=request.force,
    )
    run = ReminderRun(
        runtime.get_graph_client(), options, ledger=runtime.get_ledger(), caller=caller
    )
    if request.definition_id is None:
        return await run.remind_definitions()
    if request.instance_id is None:
        return await run.remind_definition(request.definition_id)
    return [await run.remind_instance(request.definition_id, request.instance_id)]


def failed_ids(results: list[ReminderResult]) -> list[str]:
    """List `definition/instance` for each failure; `*` stands for a whole definition."""
    return [
        f"{result.definition_id}/{result.instance_id or '*'}"
        for result in results
        if result.outcome is Outcome.FAILED
    ]


async def run_schedule(past_due: bool, invocation_id: str | None = None) -> list[ReminderResult]:
    """Run the timer's job over REMINDER_DEFINITION_IDS (or all definitions), and log it.

    Raises RunFailedError after every target was tried if any reminder failed, so that the
    invocation shows as failed.
    """
    settings = runtime.get_settings()
    scope = ", ".join(settings.definition_ids) or "all definitions"
    logger.info(
        "Scheduled reminder run started for %s%s%s",
        scope,
        " (past due)" if past_due else "",
        " (dry run)" if settings.dry_run else "",
        extra={"definition_ids": settings.definition_ids, "past_due": past_due},
    )
    options = RunOptions(
        ending_within_days=settings.ending_within_days,
        dry_run=settings.dry_run,
        pending_check=settings.pending_check,
        cooldown_s=settings.cooldown_s,
    )
    caller = Caller(trigger="timer", invocation_id=invocation_id)
    run = ReminderRun(
        runtime.get_graph_client(), options, ledger=runtime.get_ledger(), caller=caller
    )
    try:
        results = await run.remind_definitions(settings.definition_ids)
    except ReminderError as exc:
        partial = Summary.of(exc.partial_results or [])
        logger.error(
            "Scheduled reminder run stopped after %d sent: %s",
            partial.sent,
            exc,
            extra={**partial.to_dict(), "error": type(exc).__name__},
        )
        raise

    summary = Summary.of(results)
    failed = failed_ids(results)
    listed_failures = ", ".join(failed[:MAX_LOGGED_FAILURES])
    if len(failed) > MAX_LOGGED_FAILURES:
        listed_failures += f" and {len(failed) - MAX_LOGGED_FAILURES} more"
    logger.info(
        "Scheduled reminder run done: %d sent, %d would send, %d skipped, %d failed%s",
        summary.sent,
        summary.would_send,
        summary.skipped,
        summary.failed,
        f" ({listed_failures})" if failed else "",
        extra={**summary.to_dict(), "failed_ids": failed},
    )
    if failed:
        raise RunFailedError(failed, len(results))
    return results


def describe_scope(request: ReminderRequest) -> str:
    """Name a request's scope for a log line."""
    if request.definition_id is None:
        return "all definitions"
    if request.instance_id is None:
        return f"definition {request.definition_id}"
    return f"instance {request.instance_id} of definition {request.definition_id}"


async def job_status_response(
    job_id: str, status_url: str, invocation_id: str | None
) -> ApiResponse:
    """Build the response to a poll of a long job.

    Raises LedgerUnavailableError when the job table cannot be read.
    """
    if not is_uuid(job_id):
        return problem(
            400,
            "invalid-request",
            "The job id is invalid",
            "A job id is the UUID that the 202 response returned as jobId.",
            invocation_id=invocation_id,
        )
    job = await runtime.get_job_store().get(job_id)
    if job is None:
        return problem(
            404,
            "not-found",
            "The job was not found",
            f"No reminder job has the id {job_id}. Jobs are kept in the "
            f"{runtime.get_settings().jobs_table} table of the app's storage account.",
            invocation_id=invocation_id,
        )
    if job.done:
        return job_response(job_id, job.status, job.body, status_url, JOB_POLL_INTERVAL_S)
    if is_stale(job.created_at, runtime.get_graph_client().clock.time()):
        lost = problem(
            500,
            "job-lost",
            "The job did not finish",
            f"Job {job_id} has been running for over {JOB_STALE_AFTER_S // 60} minutes, so its "
            "queue message was most likely lost. Send the request again: the reminder ledger "
            "keeps reviewers from being reminded twice.",
            invocation_id=invocation_id,
        ).body
        body = {"summary": Summary.of([]).to_dict(), "results": [], "error": lost}
        return job_response(job_id, STATUS_FAILED, body, status_url, JOB_POLL_INTERVAL_S)
    return job_response(job_id, job.status, None, status_url, JOB_POLL_INTERVAL_S)
