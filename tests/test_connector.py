"""The Power Automate custom connector in connectors/, held against the OpenAPI description.

The connector is the OpenAPI description of the reminder operations plus what Power Automate
shows to makers (`x-ms-summary`, visibility) and one API-key connection parameter. These tests
keep its operations, request fields and responses the same as review_reminders/openapi.json.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate

ROOT = Path(__file__).resolve().parent.parent
SPEC: dict[str, Any] = json.loads(
    (ROOT / "review_reminders" / "openapi.json").read_text(encoding="utf-8")
)
CONNECTOR: dict[str, Any] = json.loads(
    (ROOT / "connectors" / "apiDefinition.swagger.json").read_text(encoding="utf-8")
)
PROPERTIES: dict[str, Any] = json.loads(
    (ROOT / "connectors" / "apiProperties.json").read_text(encoding="utf-8")
)["properties"]
# Served for tools, not an action a maker would pick.
NOT_IN_CONNECTOR = {"/openapi.json"}
# Words for people, which the connector may phrase for makers.
PROSE = {"description", "summary", "example", "title"}


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (path, method): operation
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


def shape(node: Any) -> Any:
    """Return a schema without its prose and Power Automate extensions: the shape of a value."""
    if isinstance(node, list):
        return [shape(item) for item in node]
    if not isinstance(node, dict):
        return node
    shaped: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "definitions", "headers", "responses"):
            shaped[key] = {name: shape(sub) for name, sub in value.items()}
        elif key not in PROSE and not key.startswith("x-ms-"):
            shaped[key] = shape(value)
    return shaped


def fields(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Return (where, object) for every property, parameter and response header makers see."""
    found = [
        (f"{name}.{prop}", sub)
        for name, schema in document["definitions"].items()
        for prop, sub in schema.get("properties", {}).items()
    ]
    for (path, method), operation in operations(document).items():
        found += [(f"{method} {path} {p['name']}", p) for p in operation.get("parameters", [])]
        for status, response in operation["responses"].items():
            found += [
                (f"{method} {path} {status} {name}", header)
                for name, header in response.get("headers", {}).items()
            ]
    return found


SPEC_OPERATIONS = {
    key: value for key, value in operations(SPEC).items() if key[0] not in NOT_IN_CONNECTOR
}
CONNECTOR_OPERATIONS = operations(CONNECTOR)


def test_connector_is_valid_swagger() -> None:
    validate(CONNECTOR)


def test_operations_match_description() -> None:
    assert set(CONNECTOR_OPERATIONS) == set(SPEC_OPERATIONS)


@pytest.mark.parametrize("key", sorted(SPEC_OPERATIONS))
def test_operation_ids_match(key: tuple[str, str]) -> None:
    assert CONNECTOR_OPERATIONS[key]["operationId"] == SPEC_OPERATIONS[key]["operationId"]


def test_send_action_is_named() -> None:
    send = CONNECTOR_OPERATIONS[("/reminders", "post")]
    assert send["summary"] == "Send access review reminders"
    assert send["x-ms-visibility"] == "important"


def test_job_action_is_named() -> None:
    assert CONNECTOR_OPERATIONS[("/reminders/jobs/{jobId}", "get")]["summary"] == (
        "Get reminder job"
    )


def test_request_fields_match_description() -> None:
    connector = CONNECTOR["definitions"]["ReminderRequest"]
    spec = SPEC["definitions"]["ReminderRequest"]
    assert list(connector["properties"]) == list(spec["properties"])
    assert shape(connector) == shape(spec)


@pytest.mark.parametrize("key", sorted(SPEC_OPERATIONS))
def test_responses_match_description(key: tuple[str, str]) -> None:
    connector, spec = CONNECTOR_OPERATIONS[key], SPEC_OPERATIONS[key]
    assert sorted(connector["responses"]) == sorted(spec["responses"])
    assert shape(connector["responses"]) == shape(spec["responses"])


@pytest.mark.parametrize("key", sorted(SPEC_OPERATIONS))
def test_parameters_match_description(key: tuple[str, str]) -> None:
    connector, spec = CONNECTOR_OPERATIONS[key], SPEC_OPERATIONS[key]
    assert shape(connector.get("parameters", [])) == shape(spec.get("parameters", []))


def test_schemas_match_description() -> None:
    assert shape(CONNECTOR["definitions"]) == shape(SPEC["definitions"])


def test_base_path_matches_description() -> None:
    assert (CONNECTOR["basePath"], CONNECTOR["schemes"]) == (SPEC["basePath"], SPEC["schemes"])


@pytest.mark.parametrize(
    "field", [pytest.param(field, id=where) for where, field in fields(CONNECTOR)]
)
def test_field_described_for_makers(field: dict[str, Any]) -> None:
    assert field.get("x-ms-summary")
    assert field.get("description")


def test_host_is_placeholder() -> None:
    # A placeholder that can never resolve, so a forgotten edit cannot send a key elsewhere.
    assert CONNECTOR["host"].endswith(".invalid")


def test_key_sent_in_functions_header() -> None:
    assert shape(CONNECTOR["securityDefinitions"]) == {
        "api_key": {"type": "apiKey", "in": "header", "name": "x-functions-key"}
    }
    assert CONNECTOR["security"] == [{"api_key": []}]


def test_connection_asks_for_secret_key() -> None:
    parameters = PROPERTIES["connectionParameters"]
    assert list(parameters) == ["api_key"]
    assert parameters["api_key"]["type"] == "securestring"
    assert parameters["api_key"]["uiDefinition"]["displayName"]


def test_brand_colour_is_hex() -> None:
    assert re.fullmatch(r"#[0-9A-Fa-f]{6}", PROPERTIES["iconBrandColor"])
