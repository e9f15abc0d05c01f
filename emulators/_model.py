"""In-memory access review tenant of the Graph emulator: its objects, their v1.0 JSON form,
and the methods that seed and change it.

`TenantModel` guards every object with `_lock`, so code must acquire it to read or change one.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

JsonObject = dict[str, object]

# Values of accessReviewInstance.status and accessReviewScheduleDefinition.status in v1.0.
REVIEW_STATUSES = frozenset(
    {
        "Initializing",
        "NotStarted",
        "Starting",
        "InProgress",
        "Completing",
        "Completed",
        "AutoReviewing",
        "AutoReviewed",
        "Applying",
        "Applied",
    }
)
# Values of accessReviewInstanceDecisionItem.decision in v1.0.
DECISION_VALUES = frozenset({"Approve", "Deny", "DontKnow", "NotReviewed"})
NOT_REVIEWED = "NotReviewed"
# Graph allows up to three stages in a multi-stage review.
MAX_STAGES = 3

# Graph fills userIdentity fields with this all-zero identity until a reviewer has acted.
_NOBODY: JsonObject = {
    "id": "00000000-0000-0000-0000-000000000000",
    "displayName": "",
    "userPrincipalName": "",
}
# Reviewer named in the reviewedBy field of every decision the emulator records as made.
EMULATED_REVIEWER: JsonObject = {
    "id": "0e1e0000-0000-4000-8000-000000000001",
    "displayName": "Emulated Reviewer",
    "userPrincipalName": "reviewer@emulator.invalid",
}


def iso(moment: datetime) -> str:
    """Format an aware datetime as a Graph UTC timestamp, such as "2025-01-31T09:00:00Z"."""
    if moment.tzinfo is None:
        raise ValueError(f"datetime {moment!r} has no time zone; pass an aware UTC datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_now() -> datetime:
    """Return the current UTC time, truncated to whole seconds as Graph's timestamps are."""
    return datetime.now(UTC).replace(microsecond=0)


def random_id() -> str:
    return str(uuid.uuid4())


def normalize_id(value: str) -> str:
    """Return `value` as a lowercase GUID. Raises ValueError when it is not a GUID."""
    return str(uuid.UUID(value))


def validate_status(status: str) -> None:
    if status not in REVIEW_STATUSES:
        raise ValueError(f"Unknown review status {status!r}; use one of {sorted(REVIEW_STATUSES)}")


def validate_decision(decision: str) -> None:
    if decision not in DECISION_VALUES:
        raise ValueError(f"Unknown decision {decision!r}; use one of {sorted(DECISION_VALUES)}")


def default_scope() -> JsonObject:
    return {
        "@odata.type": "#microsoft.graph.accessReviewQueryScope",
        "query": "/groups",
        "queryType": "MicrosoftGraph",
    }


def stage_settings(count: int) -> list[JsonObject]:
    """Build `count` accessReviewStageSettings entries, each stage depending on the one before."""
    settings: list[JsonObject] = []
    for number in range(1, count + 1):
        settings.append(
            {
                "stageId": str(number),
                "dependsOn": [str(number - 1)] if number > 1 else [],
                "durationInDays": 7,
                "recommendationsEnabled": False,
                "decisionsThatWillMoveToNextStage": ["NotReviewed", "Approve"],
                "reviewers": [],
            }
        )
    return settings


@dataclass
class Decision:
    """Decision item: what a reviewer decided about one principal's access."""

    id: str
    instance_id: str
    stage_id: str | None
    decision: str
    principal_id: str
    reviewed: str | None = None

    def to_json(self) -> JsonObject:
        decided = self.decision != NOT_REVIEWED
        return {
            "id": self.id,
            "accessReviewId": self.instance_id,
            "decision": self.decision,
            "reviewedDateTime": self.reviewed if decided else None,
            "reviewedBy": dict(EMULATED_REVIEWER if decided else _NOBODY),
            "principal": {
                "@odata.type": "#microsoft.graph.userIdentity",
                "id": self.principal_id,
                "displayName": "",
                "userPrincipalName": "",
            },
        }


@dataclass
class Stage:
    """Stage of a multi-stage review instance, with the decisions made in that stage."""

    id: str
    status: str
    start: str
    end: str
    decisions: dict[str, Decision] = field(default_factory=dict)

    def to_json(self) -> JsonObject:
        return {
            "id": self.id,
            "startDateTime": self.start,
            "endDateTime": self.end,
            "status": self.status,
        }


@dataclass
class Instance:
    """Review instance. `decisions` contains every decision, including those of each stage."""

    id: str
    definition_id: str
    status: str
    start: str
    end: str
    scope: JsonObject
    stages: dict[str, Stage] = field(default_factory=dict)
    decisions: dict[str, Decision] = field(default_factory=dict)

    def to_json(self) -> JsonObject:
        return {
            "id": self.id,
            "startDateTime": self.start,
            "endDateTime": self.end,
            "status": self.status,
            "scope": dict(self.scope),
        }


@dataclass
class Definition:
    """Review definition. `stage_count` is 0 for a single-stage review."""

    id: str
    display_name: str
    status: str
    created: str
    scope: JsonObject
    stage_count: int = 0
    instances: dict[str, Instance] = field(default_factory=dict)

    def to_json(self) -> JsonObject:
        return {
            "id": self.id,
            "displayName": self.display_name,
            "status": self.status,
            "createdDateTime": self.created,
            "lastModifiedDateTime": self.created,
            "scope": dict(self.scope),
            "stageSettings": stage_settings(self.stage_count),
        }


class TenantModel:
    """Access review definitions, instances, stages and decisions, kept in memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._definitions: dict[str, Definition] = {}

    def add_definition(
        self,
        display_name: str,
        *,
        definition_id: str | None = None,
        status: str = "InProgress",
        scope: Mapping[str, object] | None = None,
        stages: int = 0,
    ) -> str:
        """Create an access review definition and return its id (a lowercase GUID).

        `stages` from 1 to 3 makes a multi-stage review whose `stageSettings` has that many
        entries. With 0, `stageSettings` is an empty list.
        """
        validate_status(status)
        if not 0 <= stages <= MAX_STAGES:
            raise ValueError(f"stages must be from 0 to {MAX_STAGES}, got {stages}")
        new_id = normalize_id(definition_id) if definition_id else random_id()
        definition = Definition(
            id=new_id,
            display_name=display_name,
            status=status,
            created=iso(utc_now()),
            scope=dict(scope) if scope is not None else default_scope(),
            stage_count=stages,
        )
        with self._lock:
            if new_id in self._definitions:
                raise ValueError(f"Definition {new_id} already exists")
            self._definitions[new_id] = definition
        return new_id

    def add_instance(
        self,
        definition_id: str,
        status: str,
        *,
        instance_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        scope: Mapping[str, object] | None = None,
    ) -> str:
        """Create an instance of a definition and return its id (a lowercase GUID).

        `start` defaults to one day ago and `end` to 14 days after `start`. Both must be
        time-zone aware. `scope` defaults to the definition's scope.
        """
        validate_status(status)
        start = start or utc_now() - timedelta(days=1)
        end = end or start + timedelta(days=14)
        new_id = normalize_id(instance_id) if instance_id else random_id()
        with self._lock:
            definition = self._definitions.get(definition_id.lower())
            if definition is None:
                raise KeyError(f"Definition {definition_id} does not exist")
            if new_id in definition.instances:
                raise ValueError(f"Instance {new_id} already exists in definition {definition.id}")
            definition.instances[new_id] = Instance(
                id=new_id,
                definition_id=definition.id,
                status=status,
                start=iso(start),
                end=iso(end),
                scope=dict(scope) if scope is not None else dict(definition.scope),
            )
        return new_id

    def add_stage(
        self,
        definition_id: str,
        instance_id: str,
        status: str,
        *,
        stage_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> str:
        """Add a stage to an instance of a multi-stage definition and return its id.

        `start` and `end` default to the instance's dates. Raises ValueError when the
        definition was created without `stages`, or when the instance already has one stage
        per `stageSettings` entry.
        """
        validate_status(status)
        new_id = normalize_id(stage_id) if stage_id else random_id()
        with self._lock:
            definition, instance = self._lookup_instance(definition_id, instance_id)
            if definition.stage_count == 0:
                raise ValueError(
                    f"Definition {definition.id} is single-stage; create it with "
                    "add_definition(..., stages=N) to add stages"
                )
            if len(instance.stages) >= definition.stage_count:
                raise ValueError(
                    f"Instance {instance.id} already has {len(instance.stages)} stages, "
                    f"one per stageSettings entry of definition {definition.id}"
                )
            if new_id in instance.stages:
                raise ValueError(f"Stage {new_id} already exists in instance {instance.id}")
            instance.stages[new_id] = Stage(
                id=new_id,
                status=status,
                start=iso(start) if start else instance.start,
                end=iso(end) if end else instance.end,
            )
        return new_id

    def add_decision(
        self,
        definition_id: str,
        instance_id: str,
        decision: str = NOT_REVIEWED,
        *,
        stage_id: str | None = None,
        decision_id: str | None = None,
        principal_id: str | None = None,
    ) -> str:
        """Add a decision item to an instance, or to one of its stages, and return its id.

        A decision in a stage is also listed by the instance's own `decisions`. `principal_id`
        is the reviewed user and defaults to a new GUID.
        """
        validate_decision(decision)
        new_id = normalize_id(decision_id) if decision_id else random_id()
        principal = normalize_id(principal_id) if principal_id else random_id()
        with self._lock:
            _, instance = self._lookup_instance(definition_id, instance_id)
            stage = None
            if stage_id is not None:
                stage = instance.stages.get(stage_id.lower())
                if stage is None:
                    raise KeyError(f"Stage {stage_id} of instance {instance_id} does not exist")
            if new_id in instance.decisions:
                raise ValueError(f"Decision {new_id} already exists in instance {instance.id}")
            item = Decision(
                id=new_id,
                instance_id=instance.id,
                stage_id=None if stage is None else stage.id,
                decision=decision,
                principal_id=principal,
                reviewed=iso(utc_now()),
            )
            instance.decisions[new_id] = item
            if stage is not None:
                stage.decisions[new_id] = item
        return new_id

    def set_decisions(
        self,
        definition_id: str,
        instance_id: str,
        decision: str = "Approve",
        *,
        stage_id: str | None = None,
    ) -> int:
        """Set every decision of an instance, or of one of its stages, to `decision`.

        Returns how many decision items there were. Use it to finish a review mid-test.
        """
        validate_decision(decision)
        with self._lock:
            _, instance = self._lookup_instance(definition_id, instance_id)
            items = instance.decisions
            if stage_id is not None:
                stage = instance.stages.get(stage_id.lower())
                if stage is None:
                    raise KeyError(f"Stage {stage_id} of instance {instance_id} does not exist")
                items = stage.decisions
            reviewed = iso(utc_now())
            for item in items.values():
                item.decision = decision
                item.reviewed = reviewed
            return len(items)

    def set_status(self, definition_id: str, instance_id: str, status: str) -> None:
        """Change an instance's status, for example to end a review mid-test."""
        validate_status(status)
        with self._lock:
            _, instance = self._lookup_instance(definition_id, instance_id)
            instance.status = status

    def set_stage_status(
        self, definition_id: str, instance_id: str, stage_id: str, status: str
    ) -> None:
        """Change a stage's status, for example to move a multi-stage review on."""
        validate_status(status)
        with self._lock:
            _, instance = self._lookup_instance(definition_id, instance_id)
            stage = instance.stages.get(stage_id.lower())
            if stage is None:
                raise KeyError(f"Stage {stage_id} of instance {instance_id} does not exist")
            stage.status = status

    def _lookup_instance(self, definition_id: str, instance_id: str) -> tuple[Definition, Instance]:
        """Return an instance and its definition for the seeding methods. Hold `_lock`."""
        definition = self._definitions.get(definition_id.lower())
        instance = definition.instances.get(instance_id.lower()) if definition else None
        if definition is None or instance is None:
            raise KeyError(f"Instance {instance_id} of definition {definition_id} does not exist")
        return definition, instance
