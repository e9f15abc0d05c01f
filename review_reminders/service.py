"""What each trigger runs: a reminder request, or the scheduled run.

The triggers in function_app.py parse their input and map the outcome to a response; the
choice of job, its options and the run's summary line live here.
"""

from __future__ import annotations

import logging

from . import runtime
from .errors import ReminderError, RunFailedError
from .http_api import ReminderRequest
from .jobs import ReminderRun, RunOptions
from .ledger import Caller
from .results import Outcome, ReminderResult, Summary

logger = logging.getLogger(__name__)

# Failed ids listed in a summary log line; the rest are counted.
MAX_LOGGED_FAILURES = 20


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
    shown = ", ".join(failed[:MAX_LOGGED_FAILURES])
    if len(failed) > MAX_LOGGED_FAILURES:
        shown += f" and {len(failed) - MAX_LOGGED_FAILURES} more"
    logger.info(
        "Scheduled reminder run done: %d sent, %d would send, %d skipped, %d failed%s",
        summary.sent,
        summary.would_send,
        summary.skipped,
        summary.failed,
        f" ({shown})" if failed else "",
        extra={**summary.to_dict(), "failed_ids": failed},
    )
    if failed:
        raise RunFailedError(failed, len(results))
    return results
