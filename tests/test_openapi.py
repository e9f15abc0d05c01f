"""The OpenAPI 2.0 description in review_reminders/openapi.json, held against the function app.

The description must be valid Swagger, list the fields that the code accepts, and describe
every response of the HTTP functions. The property-based tests drive the registered function
through the `azure.functions` programming model, against the Graph and identity emulators,
with bodies generated from the description's request schema: valid ones, broken ones and raw
bytes, under a few Graph faults. Each response must have a documented status, its documented
headers, and a body that validates against the documented schema with no undocumented members.
"""

from __future__ import annotations

import inspect
import json
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft4Validator, FormatChecker
from openapi_spec_validator import validate

from emulators import Emulators
from emulators.sample import (
    FINANCE_APP_DEFINITION_ID,
    FINANCE_NOT_STARTED_INSTANCE_ID,
    GUEST_IN_PROGRESS_INSTANCE_IDS,
    GUEST_REVIEW_DEFINITION_ID,
    PRIVILEGED_COMPLETED_INSTANCE_ID,
    PRIVILEGED_IN_PROGRESS_INSTANCE_ID,
    PRIVILEGED_ROLE_DEFINITION_ID,
)
from review_reminders import http_api
from review_reminders.settings import is_guid
from tests import functions_support as app_tests

ROOT = Path(__file__).resolve().parent.parent
SPEC: dict[str, Any] = json.loads(
    (ROOT / "review_reminders" / "openapi.json").read_text(encoding="utf-8")
)
REQUEST_SCHEMA: dict[str, Any] = SPEC["definitions"]["ReminderRequest"]
FIELDS: dict[str, Any] = REQUEST_SCHEMA["properties"]
SEND = SPEC["paths"]["/reminders"]["post"]
GET_JOB = SPEC["paths"]["/reminders/jobs/{jobId}"]["get"]
GET_DESCRIPTION = SPEC["paths"]["/openapi.json"]["get"]
GUID = re.compile(FIELDS["definitionId"]["pattern"])

# The scope rule (one definition, or all definitions) is beyond Swagger 2.0's schema language,
# so the request schema states it in words and these tests encode it.
SCOPE_FIELDS = ("definitionId", "instanceId", "allDefinitions")
OPTION_FIELDS = tuple(name for name in FIELDS if name not in SCOPE_FIELDS)
REJECTED_STATUSES = {400, 413, 415}
UNKNOWN_JOB_ID = "0b7c5a3e-2f4d-4e6a-9c1b-8d2e7f6a5b4c"

EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    database=None,
    # The examples of one test share its emulators, so each example resets their faults first.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@pytest.fixture
def short_retry_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    # Throttling examples then give up after a few retries on the fake clock.
    monkeypatch.setenv("GRAPH_RETRY_BUDGET_SECONDS", "5")


# Swagger schemas as JSON Schema draft 4


def to_json_schema(node: Any, *, strict: bool) -> Any:
    """Translate a Swagger 2.0 schema to JSON Schema draft 4.

    `x-nullable` becomes a "null" type. With `strict`, an object schema that lists its
    properties admits no others, so an undocumented member of a response fails validation.
    """
    if isinstance(node, list):
        return [to_json_schema(item, strict=strict) for item in node]
    if not isinstance(node, dict):
        return node
    schema: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "definitions"):
            schema[key] = {name: to_json_schema(sub, strict=strict) for name, sub in value.items()}
        elif not key.startswith("x-") and key != "example":
            schema[key] = to_json_schema(value, strict=strict)
    if node.get("x-nullable"):
        schema["type"] = [schema["type"], "null"]
        if "enum" in schema:
            schema["enum"] = [*schema["enum"], None]
    if strict and schema.get("type") == "object" and "properties" in schema:
        schema.setdefault("additionalProperties", False)
    return schema


FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if isinstance(value, str):
        datetime.fromisoformat(value)
    return True


@FORMATS.checks("uuid", raises=ValueError)
def _is_uuid(value: object) -> bool:
    if isinstance(value, str):
        uuid.UUID(value)
    return True


def schema_errors(schema: Mapping[str, Any], instance: object) -> list[str]:
    """Return why `instance` does not match `schema`, a schema of the description.

    The list is empty when it matches.
    """
    document = to_json_schema(dict(schema), strict=True)
    document["definitions"] = to_json_schema(SPEC["definitions"], strict=True)
    found = Draft4Validator(document, format_checker=FORMATS).iter_errors(instance)
    return [f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in found]


def check_documented(response: func.HttpResponse, operation: Mapping[str, Any]) -> None:
    """Assert that `response` is one of the responses that `operation` documents."""
    status = str(response.status_code)
    assert status in operation["responses"], f"undocumented status {status}"
    documented = operation["responses"][status]
    for name, header in documented.get("headers", {}).items():
        assert name in response.headers, f"{status} lacks the {name} header"
        if header["type"] == "integer":
            assert int(response.headers[name]) >= header.get("minimum", 0)
    if "schema" not in documented:
        return
    body = json.loads(response.get_body())
    errors = schema_errors(documented["schema"], body)
    assert not errors, f"{status} body does not match the description: {errors}"
    if response.status_code >= 400:
        assert response.mimetype == http_api.PROBLEM_CONTENT_TYPE
        assert body["status"] == response.status_code
    else:
        assert response.mimetype == http_api.JSON_CONTENT_TYPE


# Strategies, from the request schema


def guids() -> st.SearchStrategy[str]:
    return st.uuids().flatmap(lambda value: st.sampled_from([str(value), str(value).upper()]))


# Mostly the sample tenant's definitions, so that most examples get past the lookup.
DEFINITION_IDS = st.sampled_from(
    [
        GUEST_REVIEW_DEFINITION_ID,
        PRIVILEGED_ROLE_DEFINITION_ID,
        FINANCE_APP_DEFINITION_ID,
        app_tests.MISSING_ID,
        "random",
    ]
).flatmap(lambda value: guids() if value == "random" else st.just(value))

# (definitionId, instanceId) pairs: in progress, completed, not started, missing and random.
INSTANCES = st.one_of(
    st.sampled_from(
        [
            (GUEST_REVIEW_DEFINITION_ID, GUEST_IN_PROGRESS_INSTANCE_IDS[0]),
            (PRIVILEGED_ROLE_DEFINITION_ID, PRIVILEGED_IN_PROGRESS_INSTANCE_ID),
            (PRIVILEGED_ROLE_DEFINITION_ID, PRIVILEGED_COMPLETED_INSTANCE_ID),
            (FINANCE_APP_DEFINITION_ID, FINANCE_NOT_STARTED_INSTANCE_ID),
            (GUEST_REVIEW_DEFINITION_ID, app_tests.MISSING_ID),
        ]
    ),
    st.tuples(DEFINITION_IDS, guids()),
)

ANY_OTHER_TYPE = st.one_of(st.none(), st.lists(st.integers(), max_size=2), st.just({}))


def field_values(name: str) -> st.SearchStrategy[Any]:
    """Return a strategy for values that the request schema accepts for one field."""
    schema = FIELDS[name]
    if schema["type"] == "boolean":
        return st.booleans()
    if schema["type"] == "integer":
        return st.integers(schema.get("minimum"), schema.get("maximum"))
    if schema["type"] == "string" and "pattern" in schema:
        return guids()
    raise AssertionError(f"no strategy for {name}: {schema}")


def wrong_values(name: str) -> st.SearchStrategy[Any]:
    """Return a strategy for values that the request schema rejects for one field."""
    schema = FIELDS[name]
    if schema["type"] == "boolean":
        return ANY_OTHER_TYPE | st.integers() | st.sampled_from(["true", "false", "1"])
    if schema["type"] == "integer":
        fractions = st.floats(allow_nan=False, allow_infinity=False).filter(
            lambda value: not value.is_integer()
        )
        return st.one_of(
            ANY_OTHER_TYPE,
            st.booleans(),
            st.integers(max_value=schema["minimum"] - 1),
            st.integers(min_value=schema["maximum"] + 1),
            fractions,
            st.just("7"),
        )
    not_guids = st.text(max_size=40).filter(lambda text: GUID.fullmatch(text) is None)
    return st.one_of(ANY_OTHER_TYPE, st.integers(), st.booleans(), not_guids)


@st.composite
def options(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(OPTION_FIELDS), unique=True)) if OPTION_FIELDS else []
    return {name: draw(field_values(name)) for name in names}


@st.composite
def valid_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """Draw a body that follows the schema and names exactly one scope."""
    scope = draw(st.sampled_from(["definition", "instance", "all"]))
    body: dict[str, Any]
    if scope == "definition":
        body = {"definitionId": draw(DEFINITION_IDS)}
    elif scope == "instance":
        definition_id, instance_id = draw(INSTANCES)
        body = {"definitionId": definition_id, "instanceId": instance_id}
    else:
        body = {"allDefinitions": True}
    return {**body, **draw(options())}


@st.composite
def bodies_without_one_scope(draw: st.DrawFn) -> dict[str, Any]:
    """Draw a body whose fields are each valid but that names no scope, or two."""
    scopes: list[dict[str, Any]] = [
        {},
        {"allDefinitions": False},
        {"instanceId": draw(guids())},
        {"allDefinitions": True, "definitionId": draw(DEFINITION_IDS)},
        {"allDefinitions": True, "instanceId": draw(guids())},
    ]
    return {**draw(st.sampled_from(scopes)), **draw(options())}


@st.composite
def bodies_with_a_wrong_value(draw: st.DrawFn) -> dict[str, Any]:
    body = draw(valid_bodies())
    name = draw(st.sampled_from(sorted(FIELDS)))
    body[name] = draw(wrong_values(name))
    return body


@st.composite
def bodies_with_an_unknown_field(draw: st.DrawFn) -> dict[str, Any]:
    body = draw(valid_bodies())
    name = draw(st.text(min_size=1, max_size=20).filter(lambda text: text not in FIELDS))
    body[name] = draw(st.none() | st.booleans() | st.integers() | st.text(max_size=10))
    return body


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
NOT_OBJECTS = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3), max_leaves=6)
SMALL_BODY = json.dumps({"definitionId": GUEST_REVIEW_DEFINITION_ID}).encode()

# (raw body, content type) of requests that no JSON value can express.
RAW_REQUESTS = st.sampled_from(
    [
        (b"", "application/json"),
        (b"   ", "application/json"),
        (b'{"definitionId": ', "application/json"),
        (b'{"definitionId": NaN}', "application/json"),
        (b"\xff\xfe{}", "application/json"),
        (
            b'{"definitionId": "%s", "definitionId": "%s"}'
            % (GUEST_REVIEW_DEFINITION_ID.encode(), PRIVILEGED_ROLE_DEFINITION_ID.encode()),
            "application/json",
        ),
        (SMALL_BODY + b" " * http_api.MAX_BODY_BYTES, "application/json"),
        (SMALL_BODY, "text/plain"),
        (b"definitionId=x", "application/x-www-form-urlencoded"),
    ]
)


@st.composite
def rejected_requests(draw: st.DrawFn) -> tuple[bytes, str]:
    """Draw the (raw body, content type) of a request that the function must reject."""
    kind = draw(st.sampled_from(["scope", "value", "unknown field", "not an object", "raw"]))
    if kind == "raw":
        raw: tuple[bytes, str] = draw(RAW_REQUESTS)
        return raw
    body: object
    if kind == "scope":
        body = draw(bodies_without_one_scope())
    elif kind == "value":
        body = draw(bodies_with_a_wrong_value())
    elif kind == "unknown field":
        body = draw(bodies_with_an_unknown_field())
    else:
        body = draw(NOT_OBJECTS)
    return json.dumps(body).encode(), "application/json"


# Graph faults that one example may add. The next example clears them.
FAULTS: dict[str, Callable[[Emulators], None]] = {
    "none": lambda emu: None,
    "permission denied": lambda emu: emu.graph.deny_access(),
    "one send fails": lambda emu: emu.graph.fail("POST", r"/sendReminder$", 500),
    "sends throttled": lambda emu: emu.graph.fail(
        "POST", r"/sendReminder$", 429, retry_after="2", times=1000
    ),
    "listing throttled": lambda emu: emu.graph.fail(
        "GET", r"/instances", 429, retry_after="2", times=1000
    ),
    "send times out": lambda emu: emu.graph.fail("POST", r"/sendReminder$", 504),
}


def use_fault(emu: Emulators, fault: str) -> None:
    emu.graph.clear_faults()
    emu.graph.deny_access(False)
    FAULTS[fault](emu)


# Calling the HTTP functions


def http_routes() -> set[tuple[str, str]]:
    """Return (method, route) of every registered HTTP function. Routes are below /api."""
    routes = set()
    for function in app_tests.FUNCTIONS.values():
        trigger = function.get_trigger().get_dict_repr()
        if trigger.get("type") == "httpTrigger":
            for method in trigger.get("methods") or []:
                routes.add((str(getattr(method, "value", method)).lower(), trigger["route"]))
    return routes


def described_routes() -> set[tuple[str, str]]:
    return {(method, path.lstrip("/")) for path, item in SPEC["paths"].items() for method in item}


def http_handler(method: str, route: str) -> Callable[..., Any]:
    """Return the user function registered for `method` on /api/`route`."""
    for function in app_tests.FUNCTIONS.values():
        trigger = function.get_trigger().get_dict_repr()
        methods = {str(getattr(m, "value", m)) for m in trigger.get("methods") or []}
        if trigger.get("route") == route and method in methods:
            handler: Callable[..., Any] = function.get_user_function()
            return handler
    raise AssertionError(f"no function serves {method} /api/{route}")


async def call_get(route: str, route_params: dict[str, str] | None = None) -> func.HttpResponse:
    """Call GET /api/`route`, a route template, through the function registered for it."""
    handler = http_handler("GET", route)
    path = route
    for name, value in (route_params or {}).items():
        path = path.replace("{" + name + "}", value)
    request = func.HttpRequest(
        method="GET",
        url=f"http://localhost:7071/api/{path}",
        headers={"x-functions-key": app_tests.FUNCTION_KEY},
        params={},
        route_params=route_params or {},
        body=b"",
    )
    arguments: dict[str, Any] = {}
    for position, name in enumerate(inspect.signature(handler).parameters):
        if position == 0:
            arguments[name] = request
        elif name == "context":
            arguments[name] = app_tests.InvocationContext(handler.__name__)
    response = handler(**arguments)
    if inspect.isawaitable(response):
        response = await response
    assert isinstance(response, func.HttpResponse)
    return response


# The description itself


def test_description_is_valid_swagger() -> None:
    validate(SPEC)


def test_request_fields_match_code() -> None:
    assert set(FIELDS) == set(http_api.REQUEST_FIELDS)


def test_request_rejects_unknown_fields() -> None:
    assert REQUEST_SCHEMA["additionalProperties"] is False


def test_send_route_is_described() -> None:
    assert ("post", "reminders") in described_routes()
    assert ("post", "reminders") in http_routes()


def test_described_routes_all_registered() -> None:
    assert described_routes() == http_routes()


def test_base_path_is_functions_prefix() -> None:
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    prefix = host.get("extensions", {}).get("http", {}).get("routePrefix", "api")
    assert SPEC["basePath"] == f"/{prefix}"


def test_key_accepted_in_header_or_query() -> None:
    schemes = {(s["in"], s["name"]) for s in SPEC["securityDefinitions"].values()}
    alternatives = [set(requirement) for requirement in SPEC["security"]]
    assert schemes == {("header", "x-functions-key"), ("query", "code")}
    assert alternatives == [{name} for name in SPEC["securityDefinitions"]]


def test_every_property_has_description() -> None:
    missing = [
        f"{name}.{prop}"
        for name, schema in SPEC["definitions"].items()
        for prop, sub in schema.get("properties", {}).items()
        if "description" not in sub and "$ref" not in sub
    ]
    assert missing == []


def test_error_statuses_use_problem_schema() -> None:
    for path, item in SPEC["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400 and "schema" in response:
                    assert response["schema"] == {"$ref": "#/definitions/Problem"}, (
                        f"{method} {path} {status}"
                    )


def test_problem_type_pattern_matches_code() -> None:
    sample = http_api.problem(
        400, "invalid-request", "t", "d", invocation_id=str(uuid.uuid4())
    ).body
    assert schema_errors({"$ref": "#/definitions/Problem"}, sample) == []


def test_examples_match_their_schema() -> None:
    for name, schema in FIELDS.items():
        if "example" in schema:
            assert schema_errors(schema, schema["example"]) == [], name


@given(st.text(max_size=40) | guids())
@settings(max_examples=200, deadline=None, database=None)
def test_guid_pattern_agrees_with_code(text: str) -> None:
    assert (GUID.fullmatch(text) is not None) == is_guid(text)


# The HTTP function against the description


@given(body=valid_bodies(), fault=st.just("none") | st.sampled_from(sorted(FAULTS)))
@EXAMPLES
async def test_valid_bodies_get_documented_responses(
    emulators: Emulators, short_retry_budget: None, body: dict[str, Any], fault: str
) -> None:
    use_fault(emulators, fault)
    response = await app_tests.call_http(body)
    event(f"status {response.status_code}")  # shown by --hypothesis-show-statistics
    assert response.status_code != 500, response.get_body()
    check_documented(response, SEND)


@given(body=valid_bodies())
@settings(EXAMPLES, max_examples=30)
async def test_valid_bodies_are_accepted(emulators: Emulators, body: dict[str, Any]) -> None:
    use_fault(emulators, "none")
    response = await app_tests.call_http(body)
    assert response.status_code != 400, response.get_body()


@given(request=rejected_requests())
@EXAMPLES
async def test_invalid_requests_rejected_before_graph(
    emulators: Emulators, request: tuple[bytes, str]
) -> None:
    use_fault(emulators, "none")
    graph_calls = len(emulators.graph.requests)
    token_calls = len(emulators.identity.token_requests)
    raw, content_type = request
    response = await app_tests.call_http(None, raw=raw, content_type=content_type)
    event(f"status {response.status_code}")
    assert response.status_code in REJECTED_STATUSES, response.get_body()
    assert len(emulators.graph.requests) == graph_calls
    assert len(emulators.identity.token_requests) == token_calls
    check_documented(response, SEND)


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        pytest.param(b"{}", "application/json", id="400"),
        pytest.param(SMALL_BODY, "text/plain", id="415"),
        pytest.param(
            SMALL_BODY + b" " * http_api.MAX_BODY_BYTES,
            "application/json",
            id="413",
        ),
        pytest.param(
            json.dumps({"definitionId": app_tests.MISSING_ID}).encode(),
            "application/json",
            id="404",
        ),
    ],
)
async def test_problem_names_invocation(
    emulators: Emulators, raw: bytes, content_type: str
) -> None:
    response = await app_tests.call_http(None, raw=raw, content_type=content_type)
    body = json.loads(response.get_body())
    assert re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", body.get("instance", "")), body


@pytest.mark.parametrize(
    ("job_id", "status"),
    [("not-a-job", 400), ("12345", 400), (UNKNOWN_JOB_ID, 404)],
)
async def test_job_status_responses_documented(
    emulators: Emulators, job_id: str, status: int
) -> None:
    response = await call_get("reminders/jobs/{jobId}", {"jobId": job_id})
    assert response.status_code == status
    check_documented(response, GET_JOB)


async def test_served_description_is_this_file(emulators: Emulators) -> None:
    response = await call_get("openapi.json")
    check_documented(response, GET_DESCRIPTION)
    assert json.loads(response.get_body()) == SPEC
