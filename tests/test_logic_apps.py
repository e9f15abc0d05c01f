"""The Logic Apps examples in examples/logic-apps/, held against the OpenAPI description.

Each workflow must parse, start on a Recurrence trigger, and POST a body that the description's
request schema accepts to the documented route, with the function key from a SecureString
parameter and the retry policy that the README explains.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "logic-apps"
SPEC: dict[str, Any] = json.loads(
    (ROOT / "review_reminders" / "openapi.json").read_text(encoding="utf-8")
)
WORKFLOW_FILES = sorted(EXAMPLES.glob("*.json"))
PARAMETER = re.compile(r"parameters\('([^']+)'\)")
DURATION = re.compile(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?")
# Logic Apps limits: at most 90 retries, spaced from 5 seconds to one day apart.
MAX_RETRIES = 90
MIN_INTERVAL_S = 5
MAX_INTERVAL_S = 24 * 3600


def load(path: Path) -> dict[str, Any]:
    workflow: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return workflow


def http_action(workflow: dict[str, Any]) -> dict[str, Any]:
    actions = [a for a in workflow["definition"]["actions"].values() if a["type"] == "Http"]
    assert len(actions) == 1
    return actions[0]


def seconds(duration: str) -> int:
    match = DURATION.fullmatch(duration)
    assert match, f"not an ISO 8601 duration: {duration}"
    assert any(match.groups()), f"empty duration: {duration}"
    hours, minutes, secs = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + secs


def described_path(uri: str) -> str:
    """Return the URI's path after the leading functionAppUrl expression."""
    match = re.fullmatch(r"@\{parameters\('functionAppUrl'\)\}(/.*)", uri)
    assert match, f"URI does not start with the functionAppUrl parameter: {uri}"
    return match.group(1)


workflows = pytest.mark.parametrize(
    "path", [pytest.param(path, id=path.name) for path in WORKFLOW_FILES]
)


def test_both_examples_present() -> None:
    assert [path.name for path in WORKFLOW_FILES] == [
        "workflow-managed-identity.json",
        "workflow.json",
    ]


@workflows
def test_starts_on_recurrence(path: Path) -> None:
    triggers = list(load(path)["definition"]["triggers"].values())
    assert [trigger["type"] for trigger in triggers] == ["Recurrence"]
    assert triggers[0]["recurrence"]["frequency"] in {"Minute", "Hour", "Day", "Week", "Month"}


@workflows
def test_posts_to_documented_route(path: Path) -> None:
    inputs = http_action(load(path))["inputs"]
    route = described_path(inputs["uri"])
    assert route.startswith(SPEC["basePath"] + "/")
    operations = SPEC["paths"][route.removeprefix(SPEC["basePath"])]
    assert inputs["method"].lower() in operations
    assert inputs["method"] == "POST"


@workflows
def test_body_matches_request_schema(path: Path) -> None:
    body = http_action(load(path))["inputs"]["body"]
    schema = SPEC["definitions"]["ReminderRequest"]
    assert [error.message for error in Draft4Validator(schema).iter_errors(body)] == []


@workflows
def test_body_names_one_scope(path: Path) -> None:
    body = http_action(load(path))["inputs"]["body"]
    assert ("definitionId" in body) != (body.get("allDefinitions") is True)


@workflows
def test_sends_json(path: Path) -> None:
    assert http_action(load(path))["inputs"]["headers"]["Content-Type"] == "application/json"


@workflows
def test_key_from_secure_parameter(path: Path) -> None:
    workflow = load(path)
    header = http_action(workflow)["inputs"]["headers"]["x-functions-key"]
    names = PARAMETER.findall(header)
    assert names == ["functionKey"]
    assert workflow["definition"]["parameters"]["functionKey"]["type"] == "SecureString"


@workflows
def test_no_secret_values_in_file(path: Path) -> None:
    workflow = load(path)
    declared = workflow["definition"]["parameters"]
    secure = {name for name, p in declared.items() if p["type"].lower().startswith("secure")}
    assert secure.isdisjoint(workflow.get("parameters", {}))


@workflows
def test_used_parameters_declared(path: Path) -> None:
    workflow = load(path)
    used = set(PARAMETER.findall(json.dumps(workflow["definition"]["actions"])))
    assert used <= set(workflow["definition"]["parameters"])


@workflows
def test_inputs_hidden_from_run_history(path: Path) -> None:
    runtime = http_action(load(path))["runtimeConfiguration"]
    assert "inputs" in runtime["secureData"]["properties"]


@workflows
def test_retry_policy_is_bounded(path: Path) -> None:
    policy = http_action(load(path))["inputs"]["retryPolicy"]
    assert policy["type"] in {"fixed", "exponential"}
    assert 1 <= policy["count"] <= MAX_RETRIES
    assert MIN_INTERVAL_S <= seconds(policy["interval"]) <= MAX_INTERVAL_S


@workflows
def test_exponential_bounds_ordered(path: Path) -> None:
    policy = http_action(load(path))["inputs"]["retryPolicy"]
    if policy["type"] == "exponential":
        low, base = seconds(policy["minimumInterval"]), seconds(policy["interval"])
        assert low <= base <= seconds(policy["maximumInterval"])


@workflows
def test_retried_body_never_forces(path: Path) -> None:
    # Retries are safe because the ledger skips instances already reminded, unless force is set.
    assert http_action(load(path))["inputs"]["body"].get("force", False) is False


@workflows
def test_async_polling_left_on(path: Path) -> None:
    # The description responds to long runs with 202 and Location, which the action then polls.
    action = http_action(load(path))
    assert "DisableAsyncPattern" not in action.get("operationOptions", "")
    assert "Location" in SPEC["paths"]["/reminders"]["post"]["responses"]["202"]["headers"]


def test_identity_variant_uses_managed_identity() -> None:
    workflow = load(EXAMPLES / "workflow-managed-identity.json")
    authentication = http_action(workflow)["inputs"]["authentication"]
    assert authentication["type"] == "ManagedServiceIdentity"
    assert PARAMETER.findall(authentication["audience"]) == ["functionAppAudience"]


def test_identity_audience_is_app_uri() -> None:
    workflow = load(EXAMPLES / "workflow-managed-identity.json")
    assert workflow["parameters"]["functionAppAudience"]["value"].startswith("api://")


def test_key_variant_has_no_token() -> None:
    assert "authentication" not in http_action(load(EXAMPLES / "workflow.json"))["inputs"]
