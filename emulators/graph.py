"""Emulate the Microsoft Graph v1.0 access review routes that the reminder app calls.

The state (definitions, instances, stages and decisions) lives in memory. Each request passes,
in order, through the latency delay, the scripted faults, the bearer token check,
`deny_access`, the throttle, and the route table in `GraphEmulator._register_routes`. Route
handlers take a `GraphCall` and never see HTTP. A `POST /v1.0/$batch` is authenticated once,
and then each of its sub-requests goes through the faults, `deny_access`, the throttle and
the routes just as a direct request does.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

from emulators._http import IncomingRequest, LoopbackServer, OutgoingResponse, json_response
from emulators._model import (
    Decision,
    Definition,
    Instance,
    JsonObject,
    Stage,
    TenantModel,
    iso,
    random_id,
    utc_now,
)
from emulators._routing import Router
from emulators.batch import BatchFormatError, BatchItem, parse_batch, response_entry
from emulators.faults import Fault, FaultQueue, fault_response
from emulators.throttle import Throttle, TokenBucket, retry_after_seconds

logger = logging.getLogger(__name__)

API_VERSION_PREFIX = "/v1.0"
BATCH_PATH = API_VERSION_PREFIX + "/$batch"
DEFINITIONS_PATH = "/identityGovernance/accessReviews/definitions"
DEFAULT_PAGE_SIZE = 2
REQUIRED_PERMISSION = "AccessReview.ReadWrite.All"

_ERROR_CODES = {
    400: "BadRequest",
    401: "InvalidAuthenticationToken",
    403: "Authorization_RequestDenied",
    404: "NotFound",
    405: "MethodNotAllowed",
    424: "FailedDependency",
    429: "TooManyRequests",
    500: "InternalServerError",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
_SUPPORTED_QUERY_OPTIONS = frozenset({"$filter", "$select", "$skiptoken", "$top"})
# The only $filter forms served: "<property> eq '<value>'" on status or decision.
_EQ_FILTER = re.compile(r"\s*([A-Za-z]+)\s+eq\s+'([^']*)'\s*")
_MAX_TOP = 999
_METADATA_DEFINITIONS = "/$metadata#identityGovernance/accessReviews/definitions"


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
    """Graph request as the emulator saw it. The Authorization header value is never kept.

    A sub-request of a `$batch` has `batched=True`, its own method, path and query, and the
    `has_authorization` of the batch, which is recorded after its sub-requests. `delay_s` is
    the latency that the emulator added before it responded. `reset` is True when a fault
    closed the connection with a TCP reset instead of sending `status`.
    """

    method: str
    path: str
    query: dict[str, str]
    raw_query: str
    has_authorization: bool
    client_request_id: str | None
    status: int
    batched: bool = False
    delay_s: float = 0.0
    reset: bool = False


class _JsonItem(Protocol):
    def to_json(self) -> JsonObject: ...


RouteHandler = Callable[[GraphCall], OutgoingResponse]


class GraphEmulator(TenantModel):
    """Microsoft Graph access review API on 127.0.0.1, backed by an in-memory tenant.

    Seed the tenant with the methods inherited from `TenantModel`. Collections return at most
    `page_size` items per page. With `token_verifier` set, every request needs a bearer token
    that the verifier accepts for this emulator's origin. With None, any non-empty bearer
    token is accepted.

    With `throttle`, requests beyond its rate get 429 TooManyRequests, and `request_count`
    lists which requests count. `latency_s` delays every response, a `$batch` response only once.
    `time_source` is the throttle's clock, in seconds.
    """

    def __init__(
        self,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        token_verifier: TokenVerifier | None = None,
        port: int = 0,
        throttle: Throttle | None = None,
        latency_s: float = 0.0,
        time_source: Callable[[], float] = time.monotonic,
    ) -> None:
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {page_size}")
        _validate_latency(latency_s)
        super().__init__()
        self.page_size = page_size
        self._token_verifier = token_verifier
        self._time_source = time_source
        self._reminders: list[tuple[str, str]] = []
        self._requests: list[RecordedRequest] = []
        self._access_denied = False
        self._bucket = None if throttle is None else TokenBucket(throttle, time_source)
        self._latency_s = latency_s
        self._request_count = 0
        self._throttled_count = 0
        self._batch_count = 0
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
        reset: bool = False,
        passthrough: bool = False,
        probability: float = 1.0,
        seed: int | None = None,
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
                reset=reset,
                passthrough=passthrough,
                probability=probability,
                seed=seed,
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

    @property
    def held_count(self) -> int:
        """Responses that `hold=True` faults are holding now. A held batch counts once."""
        return self._server.held

    def wait_for_held(self, count: int = 1, timeout_s: float = 5.0) -> bool:
        """Block until `count` responses are held; return False if `timeout_s` passes first."""
        return self._server.wait_for_held(count, timeout_s)

    def deny_access(self, enabled: bool = True) -> None:
        """Return 403 to authenticated requests, as when the app lacks the permission."""
        with self._lock:
            self._access_denied = enabled

    @property
    def throttle(self) -> Throttle | None:
        """Rate limit in force, or None when requests are never throttled."""
        with self._lock:
            return None if self._bucket is None else self._bucket.throttle

    def set_throttle(self, throttle: Throttle | None) -> None:
        """Replace the rate limit with `throttle` and a full bucket, or turn it off with None."""
        bucket = None if throttle is None else TokenBucket(throttle, self._time_source)
        with self._lock:
            self._bucket = bucket

    @property
    def latency_s(self) -> float:
        """Seconds that the server waits before it handles each request."""
        with self._lock:
            return self._latency_s

    @latency_s.setter
    def latency_s(self, seconds: float) -> None:
        _validate_latency(seconds)
        with self._lock:
            self._latency_s = seconds

    @property
    def request_count(self) -> int:
        """Requests that reached the throttle, throttled or not, counting each batched one.

        A request counts once it passed the scripted faults, authentication, `deny_access` and
        the /v1.0 prefix check. The `$batch` request itself never counts. Requests are counted
        with or without a throttle.
        """
        with self._lock:
            return self._request_count

    @property
    def throttled_count(self) -> int:
        """429 responses sent by the throttle. Scripted 429 faults are not included."""
        with self._lock:
            return self._throttled_count

    @property
    def batch_count(self) -> int:
        """`$batch` requests whose sub-requests ran, that is, every 200 batch response."""
        with self._lock:
            return self._batch_count

    # Request pipeline

    def _serve(self, request: IncomingRequest) -> OutgoingResponse:
        delay_s = self.latency_s
        if delay_s > 0:
            # Sleeps on this request's server thread: the emulated service, not the client, is slow.
            time.sleep(delay_s)
        request_id = random_id()
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
        if fault is None:
            response = self._respond(request, call)
        elif fault.passthrough:
            response = self._respond(request, call)
            self._apply_passthrough(call, fault, response)
        else:
            response = self._fault_response(call, fault)

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
            delay_s=delay_s,
            reset=response.reset,
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
            if call.path.lower() == BATCH_PATH.lower():
                return self._run_batch(call)
        except GraphError as error:
            return self._error_response(call, error)
        return self._dispatch(call)

    def _dispatch(self, call: GraphCall) -> OutgoingResponse:
        """Check `deny_access` and the throttle, then route a request or sub-request."""
        try:
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
            self._admit()
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

    def _admit(self) -> None:
        """Count one request, and raise 429 when the throttle's bucket has no token for it."""
        with self._lock:
            self._request_count += 1
            bucket = self._bucket
        if bucket is None:
            return
        wait_s = bucket.take()
        if wait_s is None:
            return
        with self._lock:
            self._throttled_count += 1
        seconds = retry_after_seconds(wait_s)
        limit = bucket.throttle
        raise GraphError(
            429,
            "TooManyRequests",
            f"Too many requests: the emulator allows {limit.limit} requests per "
            f"{limit.window_s:g} s. Retry after {seconds} s.",
            {"Retry-After": str(seconds)},
        )

    def _run_batch(self, call: GraphCall) -> OutgoingResponse:
        """Run each sub-request of a JSON batch in the order sent and return the batch response."""
        if call.method != "POST":
            raise GraphError(
                405,
                "MethodNotAllowed",
                f"{call.method} is not allowed on /$batch; send the batch with POST.",
                {"Allow": "POST"},
            )
        try:
            items = parse_batch(call.body)
        except BatchFormatError as error:
            raise GraphError(400, "BadRequest", str(error)) from None

        statuses: dict[str, int] = {}
        entries: list[JsonObject] = []
        hold = reset = False
        for item in items:
            response = self._run_batch_item(item, statuses)
            statuses[item.id] = response.status
            hold = hold or response.hold
            reset = reset or response.reset
            entries.append(response_entry(item.id, response))
        with self._lock:
            self._batch_count += 1

        # Graph does not promise any order, so reversing it makes a client that pairs
        # responses by position instead of by id fail in tests.
        entries.reverse()
        response = json_response(200, {"responses": entries})
        # A held fault on any sub-request delays the whole batch response until release(), and
        # a reset on any sub-request resets the connection that carried the batch.
        response.hold = hold
        response.reset = reset
        return response

    def _run_batch_item(self, item: BatchItem, statuses: Mapping[str, int]) -> OutgoingResponse:
        url = urlsplit(item.url)
        path = API_VERSION_PREFIX + "/" + url.path.lstrip("/")
        call = GraphCall(
            method=item.method,
            path=path,
            params={},
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            body=item.body,
            request_id=random_id(),
            client_request_id=item.header("client-request-id"),
        )

        failed = [dependency for dependency in item.depends_on if statuses[dependency] >= 300]
        if failed:
            # Graph returns 424 for a request whose dependsOn names a request that failed.
            message = f"Request {item.id} did not run because request {failed[0]} failed."
            response = self._error_response(call, GraphError(424, "FailedDependency", message))
        else:
            fault = self._faults.take(call.method, path)
            if fault is None:
                response = self._dispatch(call)
            elif fault.passthrough:
                response = self._dispatch(call)
                self._apply_passthrough(call, fault, response)
            else:
                response = self._fault_response(call, fault)

        record = RecordedRequest(
            method=call.method,
            path=path,
            query=call.query,
            raw_query=url.query,
            has_authorization=True,
            client_request_id=call.client_request_id,
            status=response.status,
            batched=True,
            reset=response.reset,
        )
        with self._lock:
            self._requests.append(record)
        logger.info("$batch request %s: %s %s -> %d", item.id, call.method, path, response.status)
        return response

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
            "date": iso(utc_now()).removesuffix("Z"),
            "request-id": call.request_id,
        }
        if call.client_request_id is not None:
            inner_error["client-request-id"] = call.client_request_id
        envelope = {
            "error": {"code": error.code, "message": error.message, "innerError": inner_error}
        }
        return json_response(error.status, envelope, error.headers)

    def _scripted_error(self, call: GraphCall, fault: Fault) -> OutgoingResponse:
        code = fault.code or _ERROR_CODES.get(fault.status)
        if code is None:
            code = HTTPStatus(fault.status).phrase.replace(" ", "")
        message = f"The Graph emulator returned a scripted {fault.status} response."
        return self._error_response(call, GraphError(fault.status, code, message))

    def _fault_response(self, call: GraphCall, fault: Fault) -> OutgoingResponse:
        response = fault_response(fault, lambda scripted: self._scripted_error(call, scripted))
        logger.info(
            "Scripted fault %d for %s %s%s%s",
            fault.status,
            call.method,
            call.path,
            " (held until release)" if fault.hold else "",
            " (connection reset)" if fault.reset else "",
        )
        return response

    def _apply_passthrough(self, call: GraphCall, fault: Fault, response: OutgoingResponse) -> None:
        response.hold = fault.hold
        response.reset = fault.reset
        logger.info(
            "Scripted fault on the handled %s %s -> %d%s%s",
            call.method,
            call.path,
            response.status,
            " (held until release)" if fault.hold else "",
            " (connection reset)" if fault.reset else "",
        )

    # Access review resources

    def _register_routes(self) -> None:
        definition = DEFINITIONS_PATH + "/{definition_id}"
        instance = definition + "/instances/{instance_id}"
        stage = instance + "/stages/{stage_id}"
        self._router.add("GET", DEFINITIONS_PATH, self._list_definitions)
        self._router.add("GET", definition, self._get_definition)
        self._router.add("GET", definition + "/instances", self._list_instances)
        self._router.add("GET", instance, self._get_instance)
        self._router.add("POST", instance + "/sendReminder", self._send_reminder)
        self._router.add("GET", instance + "/decisions", self._list_instance_decisions)
        self._router.add("GET", instance + "/stages", self._list_stages)
        self._router.add("GET", stage, self._get_stage)
        self._router.add("GET", stage + "/decisions", self._list_stage_decisions)

    def _list_definitions(self, call: GraphCall) -> OutgoingResponse:
        self._reject_filter(call)
        context = f"{self.endpoint}{API_VERSION_PREFIX}{_METADATA_DEFINITIONS}"
        with self._lock:
            return self._page(call, list(self._definitions.values()), context)

    def _get_definition(self, call: GraphCall) -> OutgoingResponse:
        with self._lock:
            item = self._require_definition(call.params["definition_id"]).to_json()
        context = f"{self.endpoint}{API_VERSION_PREFIX}{_METADATA_DEFINITIONS}/$entity"
        return json_response(200, {"@odata.context": context, **self._select(call, item)})

    def _list_instances(self, call: GraphCall) -> OutgoingResponse:
        wanted = self._parse_eq_filter(call, "status")
        with self._lock:
            definition = self._require_definition(call.params["definition_id"])
            items = [
                instance
                for instance in definition.instances.values()
                if wanted is None or instance.status == wanted
            ]
            context = f"{self._definition_context(definition.id)}/instances"
            return self._page(call, items, context)

    def _get_instance(self, call: GraphCall) -> OutgoingResponse:
        with self._lock:
            instance = self._require_instance(
                call.params["definition_id"], call.params["instance_id"]
            )
            item = instance.to_json()
        context = f"{self._definition_context(instance.definition_id)}/instances/$entity"
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

    def _list_instance_decisions(self, call: GraphCall) -> OutgoingResponse:
        # NOTE: this lists the decisions of every stage of a multi-stage instance. How Graph
        # fills this list for a multi-stage review was not checked; clients should read
        # stages/{id}/decisions for those.
        wanted = self._parse_eq_filter(call, "decision")
        with self._lock:
            instance = self._require_instance(
                call.params["definition_id"], call.params["instance_id"]
            )
            items = _with_decision(instance.decisions.values(), wanted)
            context = f"{self._instance_context(instance)}/decisions"
            return self._page(call, items, context)

    def _list_stages(self, call: GraphCall) -> OutgoingResponse:
        wanted = self._parse_eq_filter(call, "status")
        with self._lock:
            instance = self._require_instance(
                call.params["definition_id"], call.params["instance_id"]
            )
            items = [
                stage
                for stage in instance.stages.values()
                if wanted is None or stage.status == wanted
            ]
            context = f"{self._instance_context(instance)}/stages"
            return self._page(call, items, context)

    def _get_stage(self, call: GraphCall) -> OutgoingResponse:
        with self._lock:
            instance, stage = self._require_stage(call)
            item = stage.to_json()
            context = f"{self._instance_context(instance)}/stages/$entity"
        return json_response(200, {"@odata.context": context, **self._select(call, item)})

    def _list_stage_decisions(self, call: GraphCall) -> OutgoingResponse:
        wanted = self._parse_eq_filter(call, "decision")
        with self._lock:
            instance, stage = self._require_stage(call)
            items = _with_decision(stage.decisions.values(), wanted)
            context = f"{self._instance_context(instance)}/stages('{stage.id}')/decisions"
            return self._page(call, items, context)

    def _definition_context(self, definition_id: str) -> str:
        return f"{self.endpoint}{API_VERSION_PREFIX}{_METADATA_DEFINITIONS}('{definition_id}')"

    def _instance_context(self, instance: Instance) -> str:
        return f"{self._definition_context(instance.definition_id)}/instances('{instance.id}')"

    def _require_definition(self, definition_id: str) -> Definition:
        """Return the definition. The caller must hold `_lock`."""
        definition = self._definitions.get(definition_id.lower())
        if definition is None:
            raise GraphError(
                404, "NotFound", f"Access review definition {definition_id} was not found."
            )
        return definition

    def _require_instance(self, definition_id: str, instance_id: str) -> Instance:
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

    def _require_stage(self, call: GraphCall) -> tuple[Instance, Stage]:
        """Return the instance and stage named in `call.params`. The caller must hold `_lock`."""
        instance = self._require_instance(call.params["definition_id"], call.params["instance_id"])
        stage_id = call.params["stage_id"]
        stage = instance.stages.get(stage_id.lower())
        if stage is None:
            raise GraphError(
                404,
                "NotFound",
                f"Access review stage {stage_id} was not found in instance {instance.id}.",
            )
        return instance, stage

    def _parse_eq_filter(self, call: GraphCall, property_name: str) -> str | None:
        """Return the value of a `$filter` of the form `<property_name> eq '<value>'`, if any."""
        expression = call.query.get("$filter")
        if expression is None:
            return None
        match = _EQ_FILTER.fullmatch(expression)
        if match is None or match.group(1) != property_name:
            raise GraphError(
                400,
                "BadRequest",
                f"Invalid $filter {expression!r}: the emulator supports only "
                f"{property_name} eq '<value>' on this collection.",
            )
        return match.group(2)

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

    def _page(self, call: GraphCall, items: Sequence[_JsonItem], context: str) -> OutgoingResponse:
        """Return one page of `items`, converting only that page to JSON. Hold `_lock`."""
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

        page = [self._select(call, item.to_json()) for item in items[offset : offset + page_size]]
        body: JsonObject = {"@odata.context": context}
        if offset + page_size < len(items):
            next_query = dict(call.query)
            next_query["$skiptoken"] = _encode_skiptoken(offset + page_size)
            encoded = urlencode(next_query, quote_via=quote, safe="$'")
            body["@odata.nextLink"] = f"{self.endpoint}{API_VERSION_PREFIX}{call.path}?{encoded}"
        body["value"] = page
        return json_response(200, body)


def _with_decision(decisions: Iterable[Decision], wanted: str | None) -> list[Decision]:
    return [item for item in decisions if wanted is None or item.decision == wanted]


def _validate_latency(seconds: float) -> None:
    if not seconds >= 0:
        raise ValueError(f"latency_s must be zero or positive, got {seconds}")
