"""Seed a Graph emulator with a small sample tenant whose ids never change.

Ids follow a readable pattern: definitions are a1000000-...-00000000000N, the instances of
definition N are b1000000-...-000000000N0M, and the groups they review are c1000000-....
Statuses are set explicitly and do not follow from the dates.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from emulators.graph import GraphEmulator, JsonObject

GUEST_REVIEW_DEFINITION_ID = "a1000000-0000-4000-8000-000000000001"
PRIVILEGED_ROLE_DEFINITION_ID = "a1000000-0000-4000-8000-000000000002"
FINANCE_APP_DEFINITION_ID = "a1000000-0000-4000-8000-000000000003"
CONTRACTOR_DEFINITION_ID = "a1000000-0000-4000-8000-000000000004"

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

# (definition_id, instance_id) of every InProgress instance, in the order Graph lists them.
SAMPLE_IN_PROGRESS_INSTANCES = tuple(
    [(GUEST_REVIEW_DEFINITION_ID, instance_id) for instance_id in GUEST_IN_PROGRESS_INSTANCE_IDS]
    + [(PRIVILEGED_ROLE_DEFINITION_ID, PRIVILEGED_IN_PROGRESS_INSTANCE_ID)]
)

_GUEST_GROUP_IDS = (
    "c1000000-0000-4000-8000-000000000001",
    "c1000000-0000-4000-8000-000000000002",
    "c1000000-0000-4000-8000-000000000003",
    "c1000000-0000-4000-8000-000000000004",
    "c1000000-0000-4000-8000-000000000005",
)
_FINANCE_APP_SERVICE_PRINCIPAL_ID = "c1000000-0000-4000-8000-000000000101"


def _guest_scope(group_id: str) -> JsonObject:
    return {
        "@odata.type": "#microsoft.graph.accessReviewQueryScope",
        "query": f"/groups/{group_id}/transitiveMembers/microsoft.graph.user/"
        "?$filter=(userType eq 'Guest')",
        "queryType": "MicrosoftGraph",
    }


def seed_sample_tenant(graph: GraphEmulator, *, now: datetime | None = None) -> None:
    """Add four definitions and their instances to `graph`.

    - "Quarterly guest access review": five InProgress instances (one per guest group) and
      one Applied instance from the previous quarter.
    - "Privileged role review": one InProgress and one Completed instance.
    - "Finance app access": one NotStarted instance.
    - "Contractor access review": no instances.

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
    for instance_id, group_id in zip(GUEST_IN_PROGRESS_INSTANCE_IDS, _GUEST_GROUP_IDS, strict=True):
        graph.add_instance(
            GUEST_REVIEW_DEFINITION_ID,
            "InProgress",
            instance_id=instance_id,
            start=now - 10 * days,
            end=now + 20 * days,
            scope=_guest_scope(group_id),
        )
    graph.add_instance(
        GUEST_REVIEW_DEFINITION_ID,
        "Applied",
        instance_id=GUEST_APPLIED_INSTANCE_ID,
        start=now - 100 * days,
        end=now - 70 * days,
        scope=_guest_scope(_GUEST_GROUP_IDS[0]),
    )

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
        end=now + 4 * days,
    )
    graph.add_instance(
        PRIVILEGED_ROLE_DEFINITION_ID,
        "Completed",
        instance_id=PRIVILEGED_COMPLETED_INSTANCE_ID,
        start=now - 33 * days,
        end=now - 26 * days,
    )

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
