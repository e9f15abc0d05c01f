"""Seed a Graph emulator with a small sample tenant whose ids never change.

Ids follow a readable pattern: definitions are a1000000-...-00000000000N, the instances of
definition N are b1000000-...-000000000N0M, and the groups they review are c1000000-....
Decision K of instance N0M is d1000000-...-000000N0M0KK, stage K of instance N0M is
e1000000-...-000000N0M0KK, and the reviewed users are f1000000-....
Statuses are set explicitly and do not follow from the dates.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from emulators._model import JsonObject
from emulators.graph import GraphEmulator

GUEST_REVIEW_DEFINITION_ID = "a1000000-0000-4000-8000-000000000001"
PRIVILEGED_ROLE_DEFINITION_ID = "a1000000-0000-4000-8000-000000000002"
FINANCE_APP_DEFINITION_ID = "a1000000-0000-4000-8000-000000000003"
CONTRACTOR_DEFINITION_ID = "a1000000-0000-4000-8000-000000000004"
SALES_APP_DEFINITION_ID = "a1000000-0000-4000-8000-000000000005"
MULTI_STAGE_DEFINITION_ID = "a1000000-0000-4000-8000-000000000006"

# One InProgress instance per guest group, five in all, so the list spans pages at page sizes 1-4.
GUEST_IN_PROGRESS_INSTANCE_IDS = (
    "b1000000-0000-4000-8000-000000000101",
    "b1000000-0000-4000-8000-000000000102",
    "b1000000-0000-4000-8000-000000000103",
    "b1000000-0000-4000-8000-000000000104",
    "b1000000-0000-4000-8000-000000000105",
)
GUEST_APPLIED_INSTANCE_ID = "b1000000-0000-4000-8000-000000000106"
PRIVILEGED_IN_PROGRESS_INSTANCE_ID = "b1000000-0000-4000-8000-000000000201"
PRIVILEGED_COMPLETED_INSTANCE_ID = "b1000000-0000-4000-8000-000000000202"
FINANCE_NOT_STARTED_INSTANCE_ID = "b1000000-0000-4000-8000-000000000301"
# InProgress, but every reviewer has decided, so no reviewer is left to remind.
SALES_APP_DECIDED_INSTANCE_ID = "b1000000-0000-4000-8000-000000000501"
# InProgress two-stage review: stage 1 is Completed, stage 2 is InProgress with one
# NotReviewed decision.
MULTI_STAGE_IN_PROGRESS_INSTANCE_ID = "b1000000-0000-4000-8000-000000000601"
MULTI_STAGE_COMPLETED_STAGE_ID = "e1000000-0000-4000-8000-000000601001"
MULTI_STAGE_IN_PROGRESS_STAGE_ID = "e1000000-0000-4000-8000-000000601002"

# Days from the seed time to each InProgress instance's endDateTime.
_DAYS_TO_END = {
    GUEST_IN_PROGRESS_INSTANCE_IDS[0]: 2,
    GUEST_IN_PROGRESS_INSTANCE_IDS[1]: 20,
    GUEST_IN_PROGRESS_INSTANCE_IDS[2]: 25,
    GUEST_IN_PROGRESS_INSTANCE_IDS[3]: 1,
    GUEST_IN_PROGRESS_INSTANCE_IDS[4]: 30,
    PRIVILEGED_IN_PROGRESS_INSTANCE_ID: 4,
    SALES_APP_DECIDED_INSTANCE_ID: 5,
    MULTI_STAGE_IN_PROGRESS_INSTANCE_ID: 22,
}

# (definition_id, instance_id) of every InProgress instance, in the order Graph lists them.
SAMPLE_IN_PROGRESS_INSTANCES = tuple(
    [(GUEST_REVIEW_DEFINITION_ID, instance_id) for instance_id in GUEST_IN_PROGRESS_INSTANCE_IDS]
    + [
        (PRIVILEGED_ROLE_DEFINITION_ID, PRIVILEGED_IN_PROGRESS_INSTANCE_ID),
        (SALES_APP_DEFINITION_ID, SALES_APP_DECIDED_INSTANCE_ID),
        (MULTI_STAGE_DEFINITION_ID, MULTI_STAGE_IN_PROGRESS_INSTANCE_ID),
    ]
)
# InProgress instances with at least one NotReviewed decision, in the InProgress stage for a
# multi-stage review: the ones whose reviewers a reminder reaches. Same order as above.
SAMPLE_PENDING_INSTANCES = tuple(
    pair for pair in SAMPLE_IN_PROGRESS_INSTANCES if pair[1] != SALES_APP_DECIDED_INSTANCE_ID
)
# InProgress instances whose endDateTime is less than 7 days after the seed time. With the
# default seed time (the start of the current UTC day) they also end within 7 days of now.
SAMPLE_ENDING_WITHIN_7_DAYS = tuple(
    pair for pair in SAMPLE_IN_PROGRESS_INSTANCES if _DAYS_TO_END[pair[1]] < 7
)

_GUEST_GROUP_IDS = (
    "c1000000-0000-4000-8000-000000000001",
    "c1000000-0000-4000-8000-000000000002",
    "c1000000-0000-4000-8000-000000000003",
    "c1000000-0000-4000-8000-000000000004",
    "c1000000-0000-4000-8000-000000000005",
)
_FINANCE_APP_SERVICE_PRINCIPAL_ID = "c1000000-0000-4000-8000-000000000101"

# Decisions of each guest instance, in the order Graph lists them. NotReviewed is not always
# first, and the first instance has more decisions than the default page size of 2.
_GUEST_DECISIONS = (
    ("NotReviewed", "Approve", "NotReviewed"),
    ("Approve", "NotReviewed"),
    ("NotReviewed",),
    ("Deny", "Approve", "NotReviewed"),
    ("NotReviewed", "NotReviewed"),
)


def _guest_scope(group_id: str) -> JsonObject:
    return {
        "@odata.type": "#microsoft.graph.accessReviewQueryScope",
        "query": f"/groups/{group_id}/transitiveMembers/microsoft.graph.user/"
        "?$filter=(userType eq 'Guest')",
        "queryType": "MicrosoftGraph",
    }


def _user_id(number: int) -> str:
    return f"f1000000-0000-4000-8000-{number:012d}"


def _add_decisions(
    graph: GraphEmulator,
    definition_id: str,
    instance_id: str,
    decisions: Sequence[str],
    *,
    stage_id: str | None = None,
    first_number: int = 1,
) -> None:
    """Add `decisions` with ids numbered from `first_number`, about users 1, 2, 3 and so on."""
    instance_suffix = instance_id[-3:]
    for position, decision in enumerate(decisions):
        number = first_number + position
        graph.add_decision(
            definition_id,
            instance_id,
            decision,
            stage_id=stage_id,
            decision_id=f"d1000000-0000-4000-8000-000000{instance_suffix}0{number:02d}",
            principal_id=_user_id(position + 1),
        )


def seed_sample_tenant(graph: GraphEmulator, *, now: datetime | None = None) -> None:
    """Add six definitions with their instances, stages and decisions to `graph`.

    - "Quarterly guest access review": five InProgress instances (one per guest group), each
      with at least one NotReviewed decision, and one Applied instance from the last quarter.
    - "Privileged role review": one InProgress instance with a NotReviewed decision, and one
      Completed instance.
    - "Finance app access": one NotStarted instance.
    - "Contractor access review": no instances.
    - "Sales app access review": one InProgress instance whose decisions are all Approve.
    - "Two-stage admin role review": two stageSettings entries, and one InProgress instance
      whose Completed stage 1 is fully decided and whose InProgress stage 2 has one
      NotReviewed decision.

    Dates are relative to `now`, which defaults to the start of the current UTC day.
    """
    if now is None:
        now = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = timedelta(days=1)

    graph.add_definition(
        "Quarterly guest access review",
        definition_id=GUEST_REVIEW_DEFINITION_ID,
        # Graph evaluates a "./" query against each group that the definition enumerates.
        scope={
            "@odata.type": "#microsoft.graph.accessReviewQueryScope",
            "query": "./transitiveMembers/microsoft.graph.user/?$filter=(userType eq 'Guest')",
            "queryType": "MicrosoftGraph",
        },
    )
    guests = zip(GUEST_IN_PROGRESS_INSTANCE_IDS, _GUEST_GROUP_IDS, _GUEST_DECISIONS, strict=True)
    for instance_id, group_id, decisions in guests:
        graph.add_instance(
            GUEST_REVIEW_DEFINITION_ID,
            "InProgress",
            instance_id=instance_id,
            start=now - 10 * days,
            end=now + _DAYS_TO_END[instance_id] * days,
            scope=_guest_scope(group_id),
        )
        _add_decisions(graph, GUEST_REVIEW_DEFINITION_ID, instance_id, decisions)
    graph.add_instance(
        GUEST_REVIEW_DEFINITION_ID,
        "Applied",
        instance_id=GUEST_APPLIED_INSTANCE_ID,
        start=now - 100 * days,
        end=now - 70 * days,
        scope=_guest_scope(_GUEST_GROUP_IDS[0]),
    )
    _add_decisions(graph, GUEST_REVIEW_DEFINITION_ID, GUEST_APPLIED_INSTANCE_ID, ["Approve"])

    graph.add_definition(
        "Privileged role review",
        definition_id=PRIVILEGED_ROLE_DEFINITION_ID,
        scope={
            "@odata.type": "#microsoft.graph.principalResourceMembershipsScope",
            "principalScopes": [],
            "resourceScopes": [{"query": "/roleManagement/directory/roleDefinitions"}],
        },
    )
    graph.add_instance(
        PRIVILEGED_ROLE_DEFINITION_ID,
        "InProgress",
        instance_id=PRIVILEGED_IN_PROGRESS_INSTANCE_ID,
        start=now - 3 * days,
        end=now + _DAYS_TO_END[PRIVILEGED_IN_PROGRESS_INSTANCE_ID] * days,
    )
    _add_decisions(
        graph, PRIVILEGED_ROLE_DEFINITION_ID, PRIVILEGED_IN_PROGRESS_INSTANCE_ID, ["NotReviewed"]
    )
    graph.add_instance(
        PRIVILEGED_ROLE_DEFINITION_ID,
        "Completed",
        instance_id=PRIVILEGED_COMPLETED_INSTANCE_ID,
        start=now - 33 * days,
        end=now - 26 * days,
    )
    _add_decisions(graph, PRIVILEGED_ROLE_DEFINITION_ID, PRIVILEGED_COMPLETED_INSTANCE_ID, ["Deny"])

    graph.add_definition(
        "Finance app access",
        definition_id=FINANCE_APP_DEFINITION_ID,
        status="NotStarted",
        scope={
            "@odata.type": "#microsoft.graph.accessReviewQueryScope",
            "query": f"/servicePrincipals/{_FINANCE_APP_SERVICE_PRINCIPAL_ID}/appRoleAssignedTo",
            "queryType": "MicrosoftGraph",
        },
    )
    graph.add_instance(
        FINANCE_APP_DEFINITION_ID,
        "NotStarted",
        instance_id=FINANCE_NOT_STARTED_INSTANCE_ID,
        start=now + 7 * days,
        end=now + 21 * days,
    )

    graph.add_definition(
        "Contractor access review",
        definition_id=CONTRACTOR_DEFINITION_ID,
        status="NotStarted",
    )

    graph.add_definition("Sales app access review", definition_id=SALES_APP_DEFINITION_ID)
    graph.add_instance(
        SALES_APP_DEFINITION_ID,
        "InProgress",
        instance_id=SALES_APP_DECIDED_INSTANCE_ID,
        start=now - 9 * days,
        end=now + _DAYS_TO_END[SALES_APP_DECIDED_INSTANCE_ID] * days,
    )
    _add_decisions(
        graph, SALES_APP_DEFINITION_ID, SALES_APP_DECIDED_INSTANCE_ID, ["Approve", "Approve"]
    )

    _seed_multi_stage_review(graph, now)


def _seed_multi_stage_review(graph: GraphEmulator, now: datetime) -> None:
    days = timedelta(days=1)
    definition_id = MULTI_STAGE_DEFINITION_ID
    instance_id = MULTI_STAGE_IN_PROGRESS_INSTANCE_ID
    graph.add_definition("Two-stage admin role review", definition_id=definition_id, stages=2)
    graph.add_instance(
        definition_id,
        "InProgress",
        instance_id=instance_id,
        start=now - 8 * days,
        end=now + _DAYS_TO_END[instance_id] * days,
    )
    graph.add_stage(
        definition_id,
        instance_id,
        "Completed",
        stage_id=MULTI_STAGE_COMPLETED_STAGE_ID,
        start=now - 8 * days,
        end=now - 1 * days,
    )
    graph.add_stage(
        definition_id,
        instance_id,
        "InProgress",
        stage_id=MULTI_STAGE_IN_PROGRESS_STAGE_ID,
        start=now - 1 * days,
        end=now + _DAYS_TO_END[instance_id] * days,
    )
    # The same two users are reviewed in each stage; decision ids run on across the stages.
    _add_decisions(
        graph,
        definition_id,
        instance_id,
        ["Approve", "Approve"],
        stage_id=MULTI_STAGE_COMPLETED_STAGE_ID,
    )
    _add_decisions(
        graph,
        definition_id,
        instance_id,
        ["Approve", "NotReviewed"],
        stage_id=MULTI_STAGE_IN_PROGRESS_STAGE_ID,
        first_number=3,
    )
