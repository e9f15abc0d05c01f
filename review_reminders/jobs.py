"""The reminder jobs that both triggers run: one instance, one definition, or many definitions."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from typing import Any, TypeVar

from .errors import (
    GraphError,
    GraphPermissionError,
    GraphThrottledError,
    InstanceNotActiveError,
)
from .graph import STATUS_IN_PROGRESS, GraphClient, Instance
from .results import Outcome, ReminderResult

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


def _failure(definition_id: str, instance_id: str | None, exc: GraphError) -> ReminderResult:
    throttled = isinstance(exc, GraphThrottledError)
    return ReminderResult(
        definition_id,
        instance_id,
        Outcome.FAILED,
        reason=exc.reason,
        request_id=exc.request_id,
        throttled=throttled,
        retry_after_s=exc.retry_after_s if isinstance(exc, GraphThrottledError) else None,
    )


def _skip_inactive(instance: Instance) -> ReminderResult:
    return ReminderResult(
        instance.definition_id,
        instance.id,
        Outcome.SKIPPED,
        reason=f"status is {instance.status}, not {STATUS_IN_PROGRESS}",
    )


_Job = Coroutine[Any, Any, _T]


async def _gather(jobs: Iterable[_Job[_T]]) -> list[_T]:
    """Run the jobs concurrently. The first error cancels the rest and is re-raised.

    Results keep the order of `jobs`. The Graph client bounds how many requests are in flight.
    """
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(job) for job in jobs]
    except BaseExceptionGroup as errors:
        raise _first_error(errors) from None
    return [task.result() for task in tasks]


def _discard(jobs: Iterable[_Job[Any]]) -> None:
    # Close coroutines that will never run, so Python does not warn that they were never awaited.
    for job in jobs:
        job.close()


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            return _first_error(error)
        if not isinstance(error, asyncio.CancelledError):
            return error
    return group.exceptions[0]


async def send_reminder(graph: GraphClient, instance: Instance) -> ReminderResult:
    """Send the reminder for one instance that is in progress, and report how it went.

    Graph errors become a failed result, except a permission error: every other reminder
    would fail the same way, so it stops the job.
    """
    try:
        request_id = await graph.send_reminder(instance.definition_id, instance.id)
    except GraphPermissionError:
        raise
    except GraphError as exc:
        logger.error(
            "Reminder for instance %s of definition %s failed: %s",
            instance.id,
            instance.definition_id,
            exc,
            extra={
                "definition_id": instance.definition_id,
                "instance_id": instance.id,
                "request_id": exc.request_id,
            },
        )
        return _failure(instance.definition_id, instance.id, exc)
    logger.debug(
        "Reminded the reviewers of instance %s of definition %s",
        instance.id,
        instance.definition_id,
        extra={"definition_id": instance.definition_id, "instance_id": instance.id},
    )
    return ReminderResult(instance.definition_id, instance.id, Outcome.SENT, request_id=request_id)


async def remind_instance(
    graph: GraphClient, definition_id: str, instance_id: str
) -> ReminderResult:
    """Remind the reviewers of one instance, after checking that it is in progress.

    Raises GraphNotFoundError when the instance or definition does not exist, and
    InstanceNotActiveError, without calling sendReminder, when it is not in progress.
    """
    instance = await graph.get_instance(definition_id, instance_id)
    if not instance.is_in_progress:
        raise InstanceNotActiveError(instance.definition_id, instance.id, instance.status)
    return await send_reminder(graph, instance)


async def _remind_listed(
    graph: GraphClient, instances: AsyncIterator[Instance]
) -> list[ReminderResult]:
    pending: list[_Job[ReminderResult]] = []
    try:
        async for instance in instances:
            if instance.is_in_progress:
                pending.append(send_reminder(graph, instance))
            else:
                # Graph filtered on status already, but an instance can end between list and send.
                pending.append(_done(_skip_inactive(instance)))
    except BaseException:
        _discard(pending)
        raise
    return await _gather(pending)


async def _done(result: ReminderResult) -> ReminderResult:
    return result


async def remind_definition(graph: GraphClient, definition_id: str) -> list[ReminderResult]:
    """Remind the reviewers of every in-progress instance of one definition.

    Raises GraphNotFoundError when the definition does not exist.
    """
    return await _remind_listed(graph, graph.list_instances(definition_id))


async def _remind_definition_or_report(
    graph: GraphClient, definition_id: str
) -> list[ReminderResult]:
    try:
        return await remind_definition(graph, definition_id)
    except GraphPermissionError:
        raise
    except GraphError as exc:
        logger.error(
            "Listing the instances of definition %s failed: %s",
            definition_id,
            exc,
            extra={"definition_id": definition_id, "request_id": exc.request_id},
        )
        return [_failure(definition_id, None, exc)]


async def _iterate(ids: Sequence[str]) -> AsyncIterator[str]:
    for definition_id in ids:
        yield definition_id


async def remind_definitions(
    graph: GraphClient, definition_ids: Sequence[str] = ()
) -> list[ReminderResult]:
    """Remind the reviewers of every in-progress instance of these definitions, or of all.

    A definition that cannot be read becomes one failed result with no instance id, and the
    others go on. Permission and token errors stop the whole job.
    """
    source = _iterate(definition_ids) if definition_ids else graph.list_definition_ids()
    jobs: list[_Job[list[ReminderResult]]] = []
    try:
        async for definition_id in source:
            jobs.append(_remind_definition_or_report(graph, definition_id))
    except BaseException:
        _discard(jobs)
        raise
    batches = await _gather(jobs)
    return [result for batch in batches for result in batch]
