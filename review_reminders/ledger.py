"""Reminder ledger: who was reminded when, so that retried and overlapping runs send once.

Callers retry: Logic Apps repeats a POST on 408, 429 and 5xx, and a timer run that was cut
short runs again. So before sending, a run claims the instance in Table storage, and after
sending it records the outcome. The table `reminderledger` has two kinds of row per instance,
both with the definition id as PartitionKey:

- the state row, RowKey `{instanceId}`, `Kind` = `state`: the current claim, or the last
  recorded outcome, and `LastSentAt`, the time the cooldown counts from;
- one audit row per attempt, RowKey `{instanceId}|{recorded time}|{first 8 of the claim id}`,
  `Kind` = `attempt`: outcome, Graph request-id, reason and the caller's ids. Audit rows are
  never updated, so the history survives later sends.

Claims are conditional writes. A new instance is inserted only if absent, and an existing
one is replaced only if its ETag is unchanged, so of two overlapping runs only one can claim.
A claim older than CLAIM_LEASE_S is taken to be abandoned by a run that was killed. The next
run takes it over and writes an `abandoned` audit row for it.

To read the audit trail of a definition, open the table in Storage Explorer, or run for example
`az storage entity query --account-name ACCOUNT --auth-mode login --table-name reminderledger
--filter "PartitionKey eq 'DEFINITION-ID' and Kind eq 'attempt'"`.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .storage import TableBacked, check_key, format_time, parse_time

if TYPE_CHECKING:
    from azure.data.tables import TableClient

logger = logging.getLogger(__name__)

LEDGER_TABLE = "reminderledger"
# A claim older than this is abandoned. It must exceed the longest run: the function timeout
# in host.json is 10 minutes.
CLAIM_LEASE_S = 15 * 60.0

SKIP_COOLDOWN = "cooldown"
SKIP_CLAIMED = "claimed by another run"

OUTCOME_SENT = "sent"
OUTCOME_FAILED = "failed"
OUTCOME_UNKNOWN = "unknown"
OUTCOMES = (OUTCOME_SENT, OUTCOME_FAILED, OUTCOME_UNKNOWN)
# The outcome of an audit row for a claim that was taken over after its lease.
OUTCOME_ABANDONED = "abandoned"

KIND_STATE = "state"
KIND_ATTEMPT = "attempt"
_STATUS_CLAIMED = "claimed"

# Separates the instance id from the time in audit RowKeys. Graph ids never contain it.
_ROW_KEY_SEPARATOR = "|"

# The state row's properties. Copying only these keeps the SDK's metadata out of a replace.
_STATE_PROPERTIES = (
    "PartitionKey",
    "RowKey",
    "Kind",
    "DefinitionId",
    "InstanceId",
    "Status",
    "ClaimId",
    "ClaimedAt",
    "Forced",
    "Trigger",
    "InvocationId",
    "WorkflowRunId",
    "ClientTrackingId",
    "LastSentAt",
    "LastOutcome",
    "LastRequestId",
    "LastReason",
    "RecordedAt",
)


@dataclass(frozen=True)
class Caller:
    """Origin of a run: its trigger and the ids that let an admin find it in the logs."""

    trigger: str  # "http", "timer", "queue" or "cli"
    invocation_id: str | None = None
    workflow_run_id: str | None = None  # x-ms-workflow-run-id of a Logic App or flow
    client_tracking_id: str | None = None  # x-ms-client-tracking-id

    def properties(self) -> dict[str, Any]:
        """Return the caller as Table properties. Writes leave out the None values."""
        return {
            "Trigger": self.trigger,
            "InvocationId": self.invocation_id,
            "WorkflowRunId": self.workflow_run_id,
            "ClientTrackingId": self.client_tracking_id,
        }


@dataclass(frozen=True)
class Claim:
    """A run's exclusive right to remind one instance, until it records the outcome.

    Callers pass it back to `ReminderLedger.record` and need not look inside.
    """

    definition_id: str
    instance_id: str
    claim_id: str
    claimed_at: str
    etag: str = field(repr=False)
    # The state row as this claim wrote it; `record` replaces it as a whole.
    state: Mapping[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class LedgerSkip:
    """The reason not to send: SKIP_COOLDOWN or SKIP_CLAIMED."""

    reason: str
    last_sent_at: str | None = None


class ReminderLedger(TableBacked):
    """Claims and records reminders in the `reminderledger` table."""

    DEFAULT_TABLE = LEDGER_TABLE

    async def claim(
        self,
        definition_id: str,
        instance_id: str,
        *,
        cooldown_s: float,
        force: bool,
        caller: Caller,
    ) -> Claim | LedgerSkip:
        """Claim the instance for this run, or return why it must not be reminded now.

        Another run's claim younger than CLAIM_LEASE_S always wins, even with `force`. Without
        `force`, an instance whose last `sent` or `unknown` outcome is less than `cooldown_s`
        ago is skipped. `cooldown_s` = 0 turns the cooldown off.
        Raises LedgerUnavailableError when storage fails; the caller must then send nothing.
        """
        _check_ids(definition_id, instance_id)
        _check_cooldown(cooldown_s)
        now = self._clock.time()
        claimed_at = format_time(now)
        claim_id = str(uuid.uuid4())
        fresh: dict[str, Any] = {
            "PartitionKey": definition_id,
            "RowKey": instance_id,
            "Kind": KIND_STATE,
            "DefinitionId": definition_id,
            "InstanceId": instance_id,
            "Status": _STATUS_CLAIMED,
            "ClaimId": claim_id,
            "ClaimedAt": claimed_at,
            "Forced": force,
            **caller.properties(),
        }

        def attempt(client: TableClient) -> Claim | LedgerSkip:
            from azure.core import MatchConditions
            from azure.core.exceptions import ResourceExistsError, ResourceModifiedError
            from azure.data.tables import UpdateMode

            current = _read_state(client, definition_id, instance_id)
            if current is None:
                try:
                    written = client.create_entity(_without_none(fresh))
                except ResourceExistsError:
                    return LedgerSkip(SKIP_CLAIMED)
                return _claim_of(fresh, written)

            state, etag = current
            skip = _skip_reason(state, now, cooldown_s=cooldown_s, force=force)
            if skip is not None:
                return skip

            if state.get("Status") == _STATUS_CLAIMED:
                # The lease ran out, so the run that claimed it was killed or hung.
                # NOTE: that run may have sent the reminder before it died, so taking over can
                # remind twice. The abandoned audit row records that this happened.
                client.upsert_entity(_abandoned_row(state, claimed_at), mode=UpdateMode.REPLACE)
                logger.warning(
                    "Taking over the claim on instance %s of definition %s, made at %s by "
                    "invocation %s and never recorded",
                    instance_id,
                    definition_id,
                    state.get("ClaimedAt"),
                    state.get("InvocationId"),
                    extra={"definition_id": definition_id, "instance_id": instance_id},
                )
            carried = {name: state[name] for name in _CARRIED_PROPERTIES if name in state}
            replacement = {**carried, **fresh}
            try:
                written = client.update_entity(
                    _without_none(replacement),
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
            except (ResourceModifiedError, ResourceExistsError):
                return LedgerSkip(SKIP_CLAIMED, last_sent_at=state.get("LastSentAt"))
            return _claim_of(replacement, written)

        result = await self._store.run(f"claim instance {instance_id}", attempt)
        if isinstance(result, LedgerSkip):
            logger.debug(
                "Instance %s of definition %s skipped: %s",
                instance_id,
                definition_id,
                result.reason,
            )
        return result

    async def check(
        self, definition_id: str, instance_id: str, *, cooldown_s: float
    ) -> LedgerSkip | None:
        """Return why `claim` would skip the instance now, or None. Writes nothing, for dry runs."""
        _check_ids(definition_id, instance_id)
        _check_cooldown(cooldown_s)
        now = self._clock.time()

        def read(client: TableClient) -> LedgerSkip | None:
            current = _read_state(client, definition_id, instance_id)
            if current is None:
                return None
            return _skip_reason(current[0], now, cooldown_s=cooldown_s, force=False)

        return await self._store.run(f"read instance {instance_id}", read)

    async def record(
        self,
        claim: Claim,
        *,
        outcome: str,
        request_id: str | None,
        reason: str | None = None,
    ) -> None:
        """Record the outcome of the send that `claim` allowed, and append an audit row.

        `outcome` is OUTCOME_SENT, OUTCOME_UNKNOWN (the request may have taken effect, so it
        counts as sent) or OUTCOME_FAILED (Graph certainly did not send, so the next run may).
        Raises LedgerUnavailableError when storage fails.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, got {outcome!r}")
        recorded_at = format_time(self._clock.time())
        state = dict(claim.state)
        state.update(
            Status=outcome,
            LastOutcome=outcome,
            LastRequestId=request_id,
            LastReason=reason,
            RecordedAt=recorded_at,
        )
        if outcome != OUTCOME_FAILED:
            state["LastSentAt"] = recorded_at
        audit = _attempt_row(claim, state, recorded_at)

        def write(client: TableClient) -> bool:
            from azure.core import MatchConditions
            from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
            from azure.data.tables import UpdateMode

            try:
                client.update_entity(
                    _without_none(state),
                    mode=UpdateMode.REPLACE,
                    etag=claim.etag,
                    match_condition=MatchConditions.IfNotModified,
                )
                kept = True
            except (ResourceModifiedError, ResourceNotFoundError):
                kept = False
            client.upsert_entity(_without_none(audit), mode=UpdateMode.REPLACE)
            return kept

        kept = await self._store.run(f"record instance {claim.instance_id}", write)
        if not kept:
            # The run outlived its lease and another run took the instance over. The state row
            # belongs to the other run now, so only the audit row records this run's outcome.
            logger.warning(
                "Claim %s on instance %s of definition %s was taken over before its outcome "
                "%s was recorded; only the audit row was written",
                claim.claim_id,
                claim.instance_id,
                claim.definition_id,
                outcome,
                extra={"definition_id": claim.definition_id, "instance_id": claim.instance_id},
            )


# Properties of the last recorded outcome, kept when a new claim replaces the state row.
_CARRIED_PROPERTIES = ("LastSentAt", "LastOutcome", "LastRequestId", "LastReason", "RecordedAt")


def _check_ids(definition_id: str, instance_id: str) -> None:
    check_key("definition id", definition_id)
    check_key("instance id", instance_id)
    if _ROW_KEY_SEPARATOR in instance_id:
        raise ValueError(f"instance id {instance_id[:80]!r} must not contain '|'")


def _check_cooldown(cooldown_s: float) -> None:
    if not (cooldown_s >= 0 and math.isfinite(cooldown_s)):
        raise ValueError(f"cooldown_s must be a finite number of seconds >= 0, got {cooldown_s!r}")


def _without_none(properties: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in properties.items() if value is not None}


def _read_state(
    client: TableClient, definition_id: str, instance_id: str
) -> tuple[dict[str, Any], str] | None:
    """Return the state row's properties and ETag, or None when the instance has none yet."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        entity = client.get_entity(definition_id, instance_id)
    except ResourceNotFoundError:
        return None
    state = {name: entity[name] for name in _STATE_PROPERTIES if name in entity}
    return state, str(entity.metadata["etag"])


def _claim_of(state: Mapping[str, Any], written: Mapping[str, Any]) -> Claim:
    return Claim(
        definition_id=state["DefinitionId"],
        instance_id=state["InstanceId"],
        claim_id=state["ClaimId"],
        claimed_at=state["ClaimedAt"],
        etag=str(written["etag"]),
        state=MappingProxyType(dict(state)),
    )


def _time_or_none(state: Mapping[str, Any], name: str) -> float | None:
    value = state.get(name)
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value)
    except ValueError:
        logger.warning(
            "Ignoring unreadable %s %r on instance %s", name, value, state.get("InstanceId")
        )
        return None


def _skip_reason(
    state: Mapping[str, Any], now: float, *, cooldown_s: float, force: bool
) -> LedgerSkip | None:
    last_sent_at = state.get("LastSentAt")
    last_sent_text = last_sent_at if isinstance(last_sent_at, str) else None

    if state.get("Status") == _STATUS_CLAIMED:
        claimed = _time_or_none(state, "ClaimedAt")
        if claimed is not None and now - claimed < CLAIM_LEASE_S:
            return LedgerSkip(SKIP_CLAIMED, last_sent_at=last_sent_text)

    if cooldown_s > 0 and not force:
        last_sent = _time_or_none(state, "LastSentAt")
        if last_sent is not None and now - last_sent < cooldown_s:
            return LedgerSkip(SKIP_COOLDOWN, last_sent_at=last_sent_text)
    return None


def _audit_key(instance_id: str, time_text: str, claim_id: str) -> str:
    return _ROW_KEY_SEPARATOR.join((instance_id, time_text, claim_id[:8]))


def _attempt_row(claim: Claim, state: Mapping[str, Any], recorded_at: str) -> dict[str, Any]:
    return {
        "PartitionKey": claim.definition_id,
        "RowKey": _audit_key(claim.instance_id, recorded_at, claim.claim_id),
        "Kind": KIND_ATTEMPT,
        "DefinitionId": claim.definition_id,
        "InstanceId": claim.instance_id,
        "ClaimId": claim.claim_id,
        "ClaimedAt": claim.claimed_at,
        "RecordedAt": recorded_at,
        "Outcome": state["LastOutcome"],
        "RequestId": state.get("LastRequestId"),
        "Reason": state.get("LastReason"),
        "Forced": state.get("Forced"),
        "Trigger": state.get("Trigger"),
        "InvocationId": state.get("InvocationId"),
        "WorkflowRunId": state.get("WorkflowRunId"),
        "ClientTrackingId": state.get("ClientTrackingId"),
    }


def _abandoned_row(state: Mapping[str, Any], taken_over_at: str) -> dict[str, Any]:
    # Keyed by the abandoned claim, so two runs that both try to take it over write one row.
    claimed_at = str(state.get("ClaimedAt", ""))
    claim_id = str(state.get("ClaimId", ""))
    row = {
        "PartitionKey": state["PartitionKey"],
        "RowKey": _audit_key(state["RowKey"], claimed_at, claim_id),
        "Kind": KIND_ATTEMPT,
        "DefinitionId": state.get("DefinitionId"),
        "InstanceId": state.get("InstanceId"),
        "ClaimId": claim_id,
        "ClaimedAt": claimed_at,
        "RecordedAt": taken_over_at,
        "Outcome": OUTCOME_ABANDONED,
        "Reason": (
            f"claim older than {CLAIM_LEASE_S / 60:.0f} minutes without an outcome; "
            "the reminder may or may not have been sent"
        ),
        "Forced": state.get("Forced"),
        "Trigger": state.get("Trigger"),
        "InvocationId": state.get("InvocationId"),
        "WorkflowRunId": state.get("WorkflowRunId"),
        "ClientTrackingId": state.get("ClientTrackingId"),
    }
    return _without_none(row)
