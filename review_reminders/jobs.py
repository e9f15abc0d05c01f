"""The reminder jobs that both triggers run: one instance, one definition, or many definitions.

A job streams its targets instead of building whole-tenant lists. Definitions are listed page
by page, and a bounded number of them have their instances listed at a time. A fixed pool of
workers takes each instance through the checks (status, end date, pending decisions, ledger)
and the reminder. The Graph client batches the workers' requests and paces them for the
whole process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from .batch import MAX_BATCH_SIZE
from .errors import (
    GraphError,
    GraphNotFoundError,
    GraphPermissionError,
    GraphThrottledError,
    GraphUnknownOutcomeError,
    InstanceNotActiveError,
    LedgerUnavailableError,
    TokenError,
)
from .graph import STATUS_IN_PROGRESS, Definition, GraphClient, Instance
from .ledger import OUTCOME_FAILED, OUTCOME_SENT, OUTCOME_UNKNOWN, Caller, Claim, LedgerSkip
from .results import Outcome, ReminderResult
from .settings import is_guid

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
_Job = Coroutine[Any, Any, _T]

if TYPE_CHECKING:
    from .ledger import ReminderLedger

# Errors after which every other target would fail the same way, so the run stops.
_STOPPING_ERRORS = (GraphPermissionError, TokenError, LedgerUnavailableError)

# Definitions whose instances are listed at once; their first pages share JSON batches.
LISTING_CONCURRENCY = MAX_BATCH_SIZE
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class RunOptions:
    """Options of a run: filters, the pending check, the cooldown, and whether it sends."""

    # Only instances whose endDateTime falls within this many days from now; None: all.
    ending_within_days: int | None = None
    # Resolve and check targets, report "wouldSend", and send nothing.
    dry_run: bool = False
    # Skip instances in which every reviewer has already decided.
    pending_check: bool = True
    # Skip instances reminded within this many seconds (needs a ledger); 0 turns it off.
    cooldown_s: float = 0.0
    # Send even within the cooldown. Claims still keep two runs from sending at once.
    force: bool = False


@dataclass(frozen=True)
class _Target:
    order: tuple[int, int]
    definition: Definition
    instance: Instance


async def _gather(jobs: Iterable[_Job[_T]]) -> list[_T]:
    """Run the jobs concurrently. The first error cancels the rest and is re-raised.

    Results keep the order of `jobs`.
    """
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(job) for job in jobs]
    except BaseExceptionGroup as errors:
        raise first_error(errors) from None
    return [task.result() for task in tasks]


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """Return the first error of a task group that is not a cancellation."""
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            return first_error(error)
        if not isinstance(error, asyncio.CancelledError):
            return error
    return group.exceptions[0]


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _result(
    definition: Definition | None,
    definition_id: str,
    instance: Instance | None,
    outcome: Outcome,
    **fields: Any,
) -> ReminderResult:
    return ReminderResult(
        definition_id,
        instance.id if instance else None,
        outcome,
        definition_display_name=(definition.display_name or None) if definition else None,
        instance_end_date_time=instance.end_date_time if instance else None,
        **fields,
    )


def _failure(
    definition: Definition | None,
    definition_id: str,
    instance: Instance | None,
    exc: GraphError,
    prefix: str = "",
) -> ReminderResult:
    return _result(
        definition,
        definition_id,
        instance,
        Outcome.FAILED,
        reason=prefix + exc.reason,
        request_id=exc.request_id,
        throttled=isinstance(exc, GraphThrottledError),
        retry_after_s=exc.retry_after_s if isinstance(exc, GraphThrottledError) else None,
    )


def _ledger_reason(skip: LedgerSkip) -> str:
    if skip.last_sent_at:
        return f"{skip.reason}: last reminded {skip.last_sent_at}"
    return skip.reason


def _invalid_id(definition: Definition, instance: Instance) -> ReminderResult:
    logger.error(
        "Graph listed an instance of definition %s whose id is not a GUID: %r",
        definition.id,
        instance.id[:64],
        extra={"definition_id": definition.id},
    )
    return ReminderResult(
        definition.id,
        instance.id[:64],
        Outcome.FAILED,
        reason="Graph listed this instance with an id that is not a GUID, so it was not reminded",
        definition_display_name=definition.display_name or None,
    )


class ReminderRun:
    """One run of reminders with fixed options, over one Graph client."""

    def __init__(
        self,
        graph: GraphClient,
        options: RunOptions | None = None,
        *,
        ledger: ReminderLedger | None = None,
        caller: Caller | None = None,
    ) -> None:
        self._graph = graph
        self._options = options or RunOptions()
        # Without a ledger (the operator CLI) nothing stops two runs from both sending.
        self._ledger = ledger
        self._caller = caller or Caller(trigger="unknown")
        self._started_at = graph.clock.time()
        # Enough workers to fill every concurrency slot with a full batch, twice over.
        self._workers = graph.max_concurrency * MAX_BATCH_SIZE * 2
        # Set when Graph denies the app or no token can be had: every later request would
        # fail the same way, so no new work starts, while requests in flight still report.
        self._stop: GraphPermissionError | TokenError | LedgerUnavailableError | None = None

    def _check_end_date(self, instance: Instance) -> str | None:
        days = self._options.ending_within_days
        if days is None:
            return None
        end = _parse_time(instance.end_date_time)
        if end is None:
            return "its end date is unknown, so it cannot match endingWithinDays"
        if end.timestamp() > self._started_at + days * SECONDS_PER_DAY:
            return f"it ends {instance.end_date_time}, more than {days} day(s) from now"
        return None

    async def _check_pending(self, definition: Definition, instance: Instance) -> str | None:
        pending = await self._graph.has_pending_decisions(
            instance, multi_stage=definition.multi_stage
        )
        if pending:
            return None
        if definition.multi_stage:
            return "no pending decisions: every reviewer of the current stage has decided"
        return "no pending decisions: every reviewer has decided"

    async def _check_ledger(self, definition: Definition, instance: Instance) -> str | None:
        if self._ledger is None or self._options.force:
            return None
        skip = await self._ledger.check(
            definition.id, instance.id, cooldown_s=self._options.cooldown_s
        )
        return _ledger_reason(skip) if skip is not None else None

    async def _skip_reason(self, definition: Definition, instance: Instance) -> str | None:
        if not instance.is_in_progress:
            # Graph filtered on status already, but an instance can end between list and send.
            return f"status is {instance.status}, not {STATUS_IN_PROGRESS}"
        reason = self._check_end_date(instance)
        if reason is None and self._options.pending_check:
            reason = await self._check_pending(definition, instance)
        if reason is None and self._options.dry_run:
            # A dry run only reads the ledger; a real run's claim below checks it again.
            reason = await self._check_ledger(definition, instance)
        return reason

    async def process(self, definition: Definition, instance: Instance) -> ReminderResult:
        """Take one instance through the checks and, unless it is a dry run, remind its reviewers.

        Graph errors become a failed result. Permission, token and ledger errors propagate:
        every other target would fail the same way, so they stop the job.
        """
        try:
            skip_reason = await self._skip_reason(definition, instance)
            if skip_reason:
                return _result(
                    definition, definition.id, instance, Outcome.SKIPPED, reason=skip_reason
                )
            if self._options.dry_run:
                return _result(definition, definition.id, instance, Outcome.WOULD_SEND)
            return await self._send(definition, instance)
        except GraphPermissionError:
            raise
        except GraphError as exc:
            logger.error(
                "Reminder for instance %s of definition %s failed: %s",
                instance.id,
                definition.id,
                exc,
                extra={
                    "definition_id": definition.id,
                    "instance_id": instance.id,
                    "request_id": exc.request_id,
                },
            )
            return _failure(definition, definition.id, instance, exc)

    async def _send(self, definition: Definition, instance: Instance) -> ReminderResult:
        """Claim the instance in the ledger, send the reminder, and record what happened."""
        claim: Claim | None = None
        if self._ledger is not None:
            claimed = await self._ledger.claim(
                definition.id,
                instance.id,
                cooldown_s=self._options.cooldown_s,
                force=self._options.force,
                caller=self._caller,
            )
            if isinstance(claimed, LedgerSkip):
                reason = _ledger_reason(claimed)
                return _result(definition, definition.id, instance, Outcome.SKIPPED, reason=reason)
            claim = claimed

        try:
            request_id = await self._graph.send_reminder(definition.id, instance.id)
        except GraphUnknownOutcomeError as exc:
            await self._record(claim, OUTCOME_UNKNOWN, exc.request_id, exc.reason)
            raise
        except (GraphError, TokenError) as exc:
            # Graph returned an error, or no request left, so nothing was sent.
            request_id = exc.request_id if isinstance(exc, GraphError) else None
            await self._record(claim, OUTCOME_FAILED, request_id, str(exc)[:200])
            raise

        sent = _result(definition, definition.id, instance, Outcome.SENT, request_id=request_id)
        try:
            await self._record(claim, OUTCOME_SENT, request_id, None)
        except LedgerUnavailableError as exc:
            # The reminder went out: report it as sent, and stop before sending more.
            self._stop = self._stop or exc
        logger.debug(
            "Reminded the reviewers of instance %s of definition %s",
            instance.id,
            definition.id,
            extra={"definition_id": definition.id, "instance_id": instance.id},
        )
        return sent

    async def _record(
        self, claim: Claim | None, outcome: str, request_id: str | None, reason: str | None
    ) -> None:
        if claim is not None and self._ledger is not None:
            await self._ledger.record(claim, outcome=outcome, request_id=request_id, reason=reason)

    async def remind_instance(self, definition_id: str, instance_id: str) -> ReminderResult:
        """Remind the reviewers of one instance, after checking that it is in progress.

        Raises GraphNotFoundError when the instance or definition does not exist, and
        InstanceNotActiveError, without calling sendReminder, when it is not in progress.
        """
        try:
            # Both reads leave in one JSON batch.
            async with asyncio.TaskGroup() as group:
                definition_task = group.create_task(self._graph.get_definition(definition_id))
                instance_task = group.create_task(
                    self._graph.get_instance(definition_id, instance_id)
                )
        except BaseExceptionGroup as errors:
            raise first_error(errors) from None
        definition, instance = definition_task.result(), instance_task.result()
        if not instance.is_in_progress:
            raise InstanceNotActiveError(instance.definition_id, instance.id, instance.status)
        return await self.process(definition, instance)

    async def remind_definition(self, definition_id: str) -> list[ReminderResult]:
        """Remind the reviewers of every in-progress instance of one definition.

        Raises GraphNotFoundError when the definition does not exist.
        """
        definition = await self._graph.get_definition(definition_id)
        return await self._run(_one(definition))

    async def remind_definitions(self, definition_ids: Sequence[str] = ()) -> list[ReminderResult]:
        """Remind the reviewers of every in-progress instance of these definitions, or of all.

        A definition that cannot be read becomes one failed result with no instance id, and the
        others go on. Permission and token errors stop the whole job.
        """
        if definition_ids:
            return await self._run(_many(definition_ids))
        return await self._run(self._graph.list_definitions())

    async def _run(self, definitions: AsyncIterator[Definition | str]) -> list[ReminderResult]:
        queue: asyncio.Queue[_Target | None] = asyncio.Queue(maxsize=self._workers * 2)
        results: list[tuple[tuple[int, int], ReminderResult]] = []
        listing_slots = asyncio.Semaphore(LISTING_CONCURRENCY)
        # Graph can list an item twice when its pages shift during a run; remind it once.
        seen: set[tuple[str, str]] = set()

        async def list_targets(position: int, source: Definition | str) -> None:
            try:
                definition = (
                    source
                    if isinstance(source, Definition)
                    else await self._graph.get_definition(source)
                )
                position_in_definition = 0
                async for instance in self._graph.list_instances(definition.id):
                    if self._stop is not None:
                        return
                    key = (definition.id, instance.id)
                    if key in seen:
                        continue
                    if not is_guid(instance.id):
                        results.append(((position, 0), _invalid_id(definition, instance)))
                        continue
                    seen.add(key)
                    position_in_definition += 1
                    target = _Target((position, position_in_definition), definition, instance)
                    await queue.put(target)
            except _STOPPING_ERRORS as exc:
                self._stop = self._stop or exc
            except GraphError as exc:
                definition_id = source.id if isinstance(source, Definition) else source
                prefix = "definition not found: " if isinstance(exc, GraphNotFoundError) else ""
                logger.error(
                    "Listing the instances of definition %s failed: %s",
                    definition_id,
                    exc,
                    extra={"definition_id": definition_id, "request_id": exc.request_id},
                )
                known = source if isinstance(source, Definition) else None
                results.append(((position, 0), _failure(known, definition_id, None, exc, prefix)))
            finally:
                listing_slots.release()

        async def produce() -> None:
            listed: set[str] = set()
            try:
                async with asyncio.TaskGroup() as listing:
                    position = 0
                    async for source in definitions:
                        definition_id = source.id if isinstance(source, Definition) else source
                        if self._stop is not None:
                            break
                        if definition_id in listed:
                            continue
                        listed.add(definition_id)
                        position += 1
                        await listing_slots.acquire()
                        listing.create_task(list_targets(position, source))
            except _STOPPING_ERRORS as exc:
                self._stop = self._stop or exc
            finally:
                for _ in range(self._workers):
                    await queue.put(None)

        async def work() -> None:
            while (target := await queue.get()) is not None:
                if self._stop is not None:
                    continue
                try:
                    result = await self.process(target.definition, target.instance)
                except _STOPPING_ERRORS as exc:
                    self._stop = self._stop or exc
                    result = _result(
                        target.definition,
                        target.definition.id,
                        target.instance,
                        Outcome.FAILED,
                        reason=str(exc),
                        request_id=exc.request_id if isinstance(exc, GraphError) else None,
                    )
                results.append((target.order, result))

        await _gather([produce(), *(work() for _ in range(self._workers))])
        results.sort(key=lambda pair: pair[0])
        ordered = [result for _, result in results]
        if self._stop is not None:
            self._stop.partial_results = ordered
            raise self._stop
        return ordered


async def _one(definition: Definition) -> AsyncIterator[Definition | str]:
    yield definition


async def _many(definition_ids: Sequence[str]) -> AsyncIterator[Definition | str]:
    for definition_id in definition_ids:
        yield definition_id


async def remind_instance(
    graph: GraphClient, definition_id: str, instance_id: str, options: RunOptions | None = None
) -> ReminderResult:
    """Remind the reviewers of one instance; see ReminderRun.remind_instance."""
    return await ReminderRun(graph, options).remind_instance(definition_id, instance_id)


async def remind_definition(
    graph: GraphClient, definition_id: str, options: RunOptions | None = None
) -> list[ReminderResult]:
    """Remind every in-progress instance of one definition; see ReminderRun.remind_definition."""
    return await ReminderRun(graph, options).remind_definition(definition_id)


async def remind_definitions(
    graph: GraphClient, definition_ids: Sequence[str] = (), options: RunOptions | None = None
) -> list[ReminderResult]:
    """Remind every in-progress instance of many definitions; see ReminderRun."""
    return await ReminderRun(graph, options).remind_definitions(definition_ids)
