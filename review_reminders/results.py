"""Results of a run: one per instance, and the counts by outcome. Standard library only."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Outcome(enum.StrEnum):
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"
    # A dry run's outcome for an instance that a real run would remind.
    WOULD_SEND = "wouldSend"


@dataclass(frozen=True)
class ReminderResult:
    """Outcome for one instance, or for a whole definition that could not be read."""

    definition_id: str
    instance_id: str | None
    outcome: Outcome
    reason: str | None = None
    request_id: str | None = None
    throttled: bool = False
    retry_after_s: float | None = None
    definition_display_name: str | None = None
    instance_end_date_time: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        """Return the result as the HTTP API's JSON shape, leaving out fields that do not apply."""
        body: dict[str, str | None] = {
            "definitionId": self.definition_id,
            "instanceId": self.instance_id,
            "outcome": self.outcome.value,
        }
        if self.reason:
            body["reason"] = self.reason
        if self.request_id:
            body["requestId"] = self.request_id
        if self.definition_display_name:
            body["definitionDisplayName"] = self.definition_display_name
        if self.instance_end_date_time:
            body["instanceEndDateTime"] = self.instance_end_date_time
        return body


@dataclass(frozen=True)
class Summary:
    """Counts of results by outcome."""

    sent: int = 0
    skipped: int = 0
    failed: int = 0
    would_send: int = 0

    @classmethod
    def of(cls, results: Iterable[ReminderResult]) -> Summary:
        counts = {outcome: 0 for outcome in Outcome}
        for result in results:
            counts[result.outcome] += 1
        return cls(
            counts[Outcome.SENT],
            counts[Outcome.SKIPPED],
            counts[Outcome.FAILED],
            counts[Outcome.WOULD_SEND],
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "skipped": self.skipped,
            "failed": self.failed,
            "wouldSend": self.would_send,
        }
