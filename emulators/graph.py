"""Emulate the Microsoft Graph v1.0 access review routes that the reminder app calls.

The state (definitions and their instances) lives in memory. Each request passes, in order,
through the scripted faults, the bearer token check, `deny_access`, and the route table in
`GraphEmulator._register_routes`. Route handlers take a `GraphCall` and never see HTTP, so a
later `POST /v1.0/$batch` can run each sub-request through `GraphEmulator._route`, and instance
`stages` or `decisions` are further `Router.add` calls.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from typing import Protocol
from urllib.parse import parse_qsl, quote, urlencode

from emulators._http import IncomingRequest, LoopbackServer, OutgoingResponse, json_response
from emulators._routing import Router
from emulators.faults import Fault, FaultQueue

logger = logging.getLogger(__name__)

API_VERSION_PREFIX = "/v1.0"
DEFINITIONS_PATH = "/identityGovernance/accessReviews/definitions"
DEFAULT_PAGE_SIZE = 2
REQUIRED_PERMISSION = "AccessReview.ReadWrite.All"

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

_ERROR_CODES = {
    400: "BadRequest",
    401: "InvalidAuthenticationToken",
    403: "Authorization_RequestDenied",
    404: "NotFound",
    405: "MethodNotAllowed",
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
_SUPPORTED_QUERY_OPTIONS = frozenset({"$filter", "$select", "$skiptoken", "$top"})
_STATUS_FILTER = re.compile(r"\s*status\s+eq\s+'([^']*)'\s*")
_MAX_TOP = 999
_METADATA_DEFINITIONS = "/$metadata#identityGovernance/accessReviews/definitions"

JsonObject = dict[str, object]


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"datetime {moment!r} has no time zone; pass an aware UTC datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _new_id() -> str:
    return str(uuid.uuid4())


def _normalize_id(value: str) -> str:
    return str(uuid.UUID(value))


def _validate_status(status: str) -> None:
    if status not in REVIEW_STATUSES:
        raise ValueError(f"Unknown review status {status!r}; use one of {sorted(REVIEW_STATUSES)}")


def _encode_skiptoken(offset: int) -> str:
    raw = json.dumps({"offset": offset}).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _decode_skiptoken(token: str) -> int | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        offset = json.loads(raw)["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        return None
    if not isinstance(offset, int) or offset < 0:
        return None
    return offset


def _default_scope() -> JsonObject:
    return {
        "@odata.type": "#microsoft.graph.accessReviewQueryScope",
        "query": "/groups",
        "queryType": "MicrosoftGraph",
    }


class TokenVerifier(Protocol):
    """Issuer of the bearer tokens that the Graph emulator accepts."""

    def verify_token(self, token: str, resource: str) -> str | None:
        """Return why `token` is not valid for `resource`, or None when it is valid."""
        ...


class GraphError(Exception):
    """Graph error that a route handler raises to return Graph's error envelope."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class GraphCall:
    """One Graph request after authentication, as passed to a route handler.

    `path` excludes the /v1.0 prefix and the query string. `params` are the route
    template's placeholders. `query` maps each query option to its decoded value.
    """

    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    body: bytes
    request_id: str
    client_request_id: str | None


@dataclass(frozen=True)
class RecordedRequest:
    """Graph request as the emulator saw it. The Authorization header value is never kept."""

    method: str
    path: str
    query: dict[str, str]
    raw_query: str
    has_authorization: bool
    client_request_id: str | None
    status: int


@dataclass
class _Instance:
    id: str
    definition_id: str
    status: str
    start: str
    end: str
    scope: JsonObject

    def to_json(self) -> JsonObject:
        return {
            "id": self.id,
            "startDateTime": self.start,
            "endDateTime": self.end,
            "status": self.status,
            "scope": dict(self.scope),
        }


@dataclass
class _Definition:
    id: str
    display_name: str
    status: str
    created: str
    scope: JsonObject
    instances: dict[str, _Instance] = field(default_factory=dict)

    def to_json(self) -> JsonObject:
        return {
            "id": self.id,
            "displayName": self.display_name,
            "status": self.status,
            "createdDateTime": self.created,
            "lastModifiedDateTime": self.created,
            "scope": dict(self.scope),
        }


RouteHandler = Callable[[GraphCall], OutgoingResponse]


class GraphEmulator:
    """Microsoft Graph access review API on 127.0.0.1, backed by in-memory definitions.

    Collections return at most `page_size` items per page. With `token_verifier` set, every
    request needs a bearer token that the verifier accepts for this emulator's origin. With
    None, any non-empty bearer token is accepted.
    """

    def __init__(
        self,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        token_verifier: TokenVerifier | None = None,
        port: int = 0,
    ) -> None:
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {page_size}")
        self.page_size = page_size
        self._token_verifier = token_verifier
        self._lock = threading.Lock()
        self._definitions: dict[str, _Definition] = {}
        self._reminders: list[tuple[str, str]] = []
        self._requests: list[RecordedRequest] = []
        self._access_denied = False
        self._faults = FaultQueue()
        self._router: Router[RouteHandler] = Router()
        self._register_routes()
        self._server = LoopbackServer("Graph emulator", self._serve, port=port)

    @property
    def endpoint(self) -> str:
        """Origin for GRAPH_ENDPOINT, such as "http://127.0.0.1:50123" (no /v1.0)."""
        return self._server.origin

    def start(self) -> GraphEmulator:
        """Start serving and return self."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Release held responses and stop serving."""
        self._server.stop()

    def add_definition(
        self,
        display_name: str,
        *,
        definition_id: str | None = None,
        status: str = "InProgress",
        scope: Mapping[str, object] | None = None,
    ) -> str:
        """Create an access review definition and return its id (a lowercase GUID)."""
        _validate_status(status)
        new_id = _normalize_id(definition_id) if definition_id else _new_id()
        definition = _Definition(
            id=new_id,
            display_name=display_name,
            status=status,
            created=_iso(_now()),
            scope=dict(scope) if scope is not None else _default_scope(),
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
        _validate_status(status)
        start = start or _now() - timedelta(days=1)
        end = end or start + timedelta(days=14)
        new_id = _normalize_id(instance_id) if instance_id else _new_id()
        with self._lock:
            definition = self._definitions.get(definition_id.lower())
            if definition is None:
                raise KeyError(f"Definition {definition_id} does not exist")
            if new_id in definition.instances:
                raise ValueError(f"Instance {new_id} already exists in definition {definition.id}")
            definition.instances[new_id] = _Instance(
                id=new_id,
                definition_id=definition.id,
                status=status,
                start=_iso(start),
                end=_iso(end),
                scope=dict(scope) if scope is not None else dict(definition.scope),
            )
        return new_id

    def set_status(self, definition_id: str, instance_id: str, status: str) -> None:
        """Change an instance's status, for example to end a review mid-test."""
        _validate_status(status)
        with self._lock:
            definition = self._definitions.get(definition_id.lower())
            instance = definition.instances.get(instance_id.lower()) if definition else None
            if instance is None:
                raise KeyError(
                    f"Instance {instance_id} of definition {definition_id} does not exist"
                )
            instance.status = status

    @property
    def reminders(self) -> list[tuple[str, str]]:
        """(definition_id, instance_id) of every sendReminder that returned 204, oldest first."""
        with self._lock:
            return list(self._reminders)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, oldest first, including rejected ones."""
        with self._lock:
            return list(self._requests)

    def fail(
        self,
        method: str,
        path_pattern: str,
        status: int,
        *,
        retry_after: str | None = None,
        times: int = 1,
        body: bytes | str | None = None,
        content_type: str | None = None,
        hold: bool = False,
        code: str | None = None,
    ) -> None:
        """Queue a `Fault` for the next `times` requests that match; see `Fault` for details."""
        self.add_fault(
            Fault(
                method,
                path_pattern,
                status,
                retry_after=retry_after,
                times=times,
                body=body,
                content_type=content_type,
                hold=hold,
                code=code,
            )
        )

    def add_fault(self, fault: Fault) -> None:
        """Queue `fault` after those already queued. The first match wins."""
        self._faults.add(fault)

    @property
    def pending_faults(self) -> int:
        """Uses left across all queued faults."""
        return len(self._faults)

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        self._faults.clear()

    def release(self) -> None:
        """Send every response that a `hold=True` fault is holding."""
        self._server.release()

    def deny_access(self, enabled: bool = True) -> None:
        """Return 403 to authenticated requests, as when the app lacks the permission."""
        with self._lock:
            self._access_denied = enabled

    def _serve(self, request: IncomingRequest) -> OutgoingResponse:
        request_id = _new_id()
        client_request_id = request.header("client-request-id")
        call = GraphCall(
            method=request.method,
            path=request.path,
            params={},
            query=dict(parse_qsl(request.raw_query, keep_blank_values=True)),
            body=request.body,
            request_id=request_id,
            client_request_id=client_request_id,
        )

        fault = self._faults.take(request.method, request.path)
        if fault is not None:
            response = self._fault_response(call, fault)
        else:
            response = self._respond(request, call)

        response.headers["request-id"] = request_id
        if client_request_id is not None:
            response.headers["client-request-id"] = client_request_id
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=call.query,
            raw_query=request.raw_query,
            has_authorization=request.header("authorization") is not None,
            client_request_id=client_request_id,
            status=response.status,
        )
        with self._lock:
            self._requests.append(record)
        logger.info(
            "%s %s -> %d (request-id %s)", request.method, request.path, response.status, request_id
        )
        return response

    def _respond(self, request: IncomingRequest, call: GraphCall) -> OutgoingResponse:
        try:
            self._authenticate(request)
            with self._lock:
                denied = self._access_denied
            if denied:
                raise GraphError(
                    403,
                    "Authorization_RequestDenied",
                    f"The app's identity lacks the {REQUIRED_PERMISSION} permission.",
                )
            if not call.path.startswith(API_VERSION_PREFIX + "/"):
                raise GraphError(404, "NotFound", f"Only {API_VERSION_PREFIX} is served.")
            return self._route(call)
        except GraphError as error:
            return self._error_response(call, error)

    def _authenticate(self, request: IncomingRequest) -> None:
        authorization = request.header("authorization")
        if not authorization:
            raise GraphError(
                401, "InvalidAuthenticationToken", "The Authorization header is missing."
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "The Authorization header must be 'Bearer <access token>'.",
            )
        if self._token_verifier is None:
            return
        problem = self._token_verifier.verify_token(token, self.endpoint)
        if problem is not None:
            raise GraphError(401, "InvalidAuthenticationToken", problem)

    def _route(self, call: GraphCall) -> OutgoingResponse:
        """Run the handler for `call.path` (with /v1.0) without faults or authentication."""
        path = call.path.removeprefix(API_VERSION_PREFIX)
        match = self._router.resolve(call.method, path)
        if match is None:
            allowed = self._router.allowed_methods(path)
            if allowed:
                raise GraphError(
                    405,
                    "MethodNotAllowed",
                    f"{call.method} is not allowed on {path}.",
                    {"Allow": ", ".join(allowed)},
                )
            raise GraphError(400, "BadRequest", f"No resource was found at {path}.")

        self._check_query_options(call)
        routed = GraphCall(
            method=call.method,
            path=path,
            params=match.params,
            query=call.query,
            body=call.body,
            request_id=call.request_id,
            client_request_id=call.client_request_id,
        )
        return match.handler(routed)

    def _check_query_options(self, call: GraphCall) -> None:
        for option in call.query:
            if option.startswith("$") and option not in _SUPPORTED_QUERY_OPTIONS:
                raise GraphError(
                    400,
                    "BadRequest",
                    f"The query option {option} is not supported by the emulator; "
                    f"it supports {', '.join(sorted(_SUPPORTED_QUERY_OPTIONS))}.",
                )

    def _error_response(self, call: GraphCall, error: GraphError) -> OutgoingResponse:
        inner_error: JsonObject = {
            "date": _iso(_now()).removesuffix("Z"),
            "request-id": call.request_id,
        }
        if call.client_request_id is not None:
            inner_error["client-request-id"] = call.client_request_id
        envelope = {
            "error": {"code": error.code, "message": error.message, "innerError": inner_error}
        }
        return json_response(error.status, envelope, error.headers)

    def _fault_response(self, call: GraphCall, fault: Fault) -> OutgoingResponse:
        body = fault.body_bytes
        if body is None:
            code = fault.code or _ERROR_CODES.get(fault.status)
            if code is None:
                code = HTTPStatus(fault.status).phrase.replace(" ", "")
            message = f"The Graph emulator returned a scripted {fault.status} response."
            response = self._error_response(call, GraphError(fault.status, code, message))
            if fault.content_type is not None:
                response.headers["Content-Type"] = fault.content_type
        else:
            response = OutgoingResponse(fault.status, body)
            if fault.content_type is not None:
                response.headers["Content-Type"] = fault.content_type
            elif body:
                response.headers["Content-Type"] = "text/plain; charset=utf-8"
        if fault.retry_after is not None:
            response.headers["Retry-After"] = fault.retry_after
        response.hold = fault.hold
        logger.info(
            "Scripted fault %d for %s %s%s",
            fault.status,
            call.method,
            call.path,
            " (held until release)" if fault.hold else "",
        )
        return response

    def _register_routes(self) -> None:
        definition = DEFINITIONS_PATH + "/{definition_id}"
        instance = definition + "/instances/{instance_id}"
        self._router.add("GET", DEFINITIONS_PATH, self._list_definitions)
        self._router.add("GET", definition, self._get_definition)
        self._router.add("GET", definition + "/instances", self._list_instances)
        self._router.add("GET", instance, self._get_instance)
        self._router.add("POST", instance + "/sendReminder", self._send_reminder)

    def _list_definitions(self, call: GraphCall) -> OutgoingResponse:
        self._reject_filter(call)
        with self._lock:
            items = [definition.to_json() for definition in self._definitions.values()]
        context = f"{self.endpoint}{API_VERSION_PREFIX}{_METADATA_DEFINITIONS}"
        return self._page(call, items, context)

    def _get_definition(self, call: GraphCall) -> OutgoingResponse:
        with self._lock:
            item = self._require_definition(call.params["definition_id"]).to_json()
        context = f"{self.endpoint}{API_VERSION_PREFIX}{_METADATA_DEFINITIONS}/$entity"
        return json_response(200, {"@odata.context": context, **self._select(call, item)})

    def _list_instances(self, call: GraphCall) -> OutgoingResponse:
        filter_status = self._parse_status_filter(call)
        with self._lock:
            definition = self._require_definition(call.params["definition_id"])
            items = [
                instance.to_json()
                for instance in definition.instances.values()
                if filter_status is None or instance.status == filter_status
            ]
            definition_id = definition.id
        context = (
            f"{self.endpoint}{API_VERSION_PREFIX}{_METADATA_DEFINITIONS}"
            f"('{definition_id}')/instances"
        )
        return self._page(call, items, context)

    def _get_instance(self, call: GraphCall) -> OutgoingResponse:
        with self._lock:
            instance = self._require_instance(
                call.params["definition_id"], call.params["instance_id"]
            )
            item = instance.to_json()
        context = (
            f"{self.endpoint}{API_VERSION_PREFIX}{_METADATA_DEFINITIONS}"
            f"('{instance.definition_id}')/instances/$entity"
        )
        return json_response(200, {"@odata.context": context, **self._select(call, item)})

    def _send_reminder(self, call: GraphCall) -> OutgoingResponse:
        with self._lock:
            instance = self._require_instance(
                call.params["definition_id"], call.params["instance_id"]
            )
            if instance.status != "InProgress":
                raise GraphError(
                    400,
                    "BadRequest",
                    f"Cannot send a reminder for instance {instance.id} because its status is "
                    f"{instance.status}; reminders need status InProgress.",
                )
            self._reminders.append((instance.definition_id, instance.id))
        return OutgoingResponse(204)

    def _require_definition(self, definition_id: str) -> _Definition:
        """Return the definition. The caller must hold `_lock`."""
        definition = self._definitions.get(definition_id.lower())
        if definition is None:
            raise GraphError(
                404, "NotFound", f"Access review definition {definition_id} was not found."
            )
        return definition

    def _require_instance(self, definition_id: str, instance_id: str) -> _Instance:
        """Return the instance. The caller must hold `_lock`."""
        instance = self._require_definition(definition_id).instances.get(instance_id.lower())
        if instance is None:
            raise GraphError(
                404,
                "NotFound",
                f"Access review instance {instance_id} was not found "
                f"in definition {definition_id}.",
            )
        return instance

    def _parse_status_filter(self, call: GraphCall) -> str | None:
        expression = call.query.get("$filter")
        if expression is None:
            return None
        match = _STATUS_FILTER.fullmatch(expression)
        if match is None:
            raise GraphError(
                400,
                "BadRequest",
                f"Invalid $filter {expression!r}: the emulator supports only status eq '<status>'.",
            )
        return match.group(1)

    def _reject_filter(self, call: GraphCall) -> None:
        if "$filter" in call.query:
            raise GraphError(
                400, "BadRequest", "The emulator does not support $filter on this collection."
            )

    def _select(self, call: GraphCall, item: JsonObject) -> JsonObject:
        selection = call.query.get("$select")
        if selection is None:
            return item
        names = [name.strip() for name in selection.split(",") if name.strip()]
        unknown = [name for name in names if name not in item]
        if unknown:
            raise GraphError(
                400, "BadRequest", f"Unknown property in $select: {', '.join(unknown)}."
            )
        return {name: value for name, value in item.items() if name == "id" or name in names}

    def _page(self, call: GraphCall, items: list[JsonObject], context: str) -> OutgoingResponse:
        page_size = self.page_size
        top = call.query.get("$top")
        if top is not None:
            if not top.isdigit() or not 1 <= int(top) <= _MAX_TOP:
                raise GraphError(
                    400, "BadRequest", f"$top must be an integer from 1 to {_MAX_TOP}, got {top!r}."
                )
            page_size = int(top)

        offset = 0
        skiptoken = call.query.get("$skiptoken")
        if skiptoken is not None:
            decoded = _decode_skiptoken(skiptoken)
            if decoded is None:
                raise GraphError(400, "BadRequest", "The $skiptoken value is invalid.")
            offset = decoded

        page = [self._select(call, item) for item in items[offset : offset + page_size]]
        body: JsonObject = {"@odata.context": context}
        if offset + page_size < len(items):
            next_query = dict(call.query)
            next_query["$skiptoken"] = _encode_skiptoken(offset + page_size)
            encoded = urlencode(next_query, quote_via=quote, safe="$'")
            body["@odata.nextLink"] = f"{self.endpoint}{API_VERSION_PREFIX}{call.path}?{encoded}"
        body["value"] = page
        return json_response(200, body)
