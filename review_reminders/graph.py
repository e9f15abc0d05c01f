"""Microsoft Graph client for access reviews: requests, retries, error parsing and paging."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import httpx

from .auth import TokenSource
from .errors import (
    GraphConnectionError,
    GraphError,
    GraphNotFoundError,
    GraphPermissionError,
    GraphThrottledError,
    GraphUnknownOutcomeError,
    strip_query,
)
from .pacer import Pacer
from .retry import Clock, RetryPolicy, SystemClock, parse_retry_after
from .settings import Settings, is_guid

if TYPE_CHECKING:
    from .batch import Batcher

logger = logging.getLogger(__name__)

API_VERSION = "v1.0"
USER_AGENT = "access-review-reminders/0.1"
STATUS_IN_PROGRESS = "InProgress"
DECISION_NOT_REVIEWED = "NotReviewed"
DEFINITIONS_PATH = "/identityGovernance/accessReviews/definitions"
DEFAULT_CONNECT_TIMEOUT_S = 10.0
MAX_ERROR_MESSAGE_CHARS = 300

# 429 and 503 mean Graph did not act on the request, so any method may be sent again.
_THROTTLE_STATUSES = frozenset({429, 503})
# Other server errors are retried for reads only: a POST may have taken effect.
_READ_RETRY_STATUSES = frozenset({500, 502, 504})
# Transport errors raised before any byte of the request left: safe to send again.
_NOT_SENT_ERRORS = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class Definition:
    """An access review definition: the schedule, scope and settings that instances run from."""

    id: str
    display_name: str
    multi_stage: bool = False

    @classmethod
    def from_graph(cls, item: Mapping[str, Any]) -> Definition | None:
        definition_id = item.get("id")
        if not isinstance(definition_id, str) or not is_guid(definition_id):
            return None
        name = item.get("displayName")
        stages = item.get("stageSettings")
        return cls(
            definition_id.lower(),
            name if isinstance(name, str) else "",
            multi_stage=isinstance(stages, list) and len(stages) > 0,
        )


@dataclass(frozen=True)
class Instance:
    """An access review instance: one run of a definition, with its own reviewers and dates."""

    definition_id: str
    id: str
    status: str
    start_date_time: str | None = None
    end_date_time: str | None = None

    @property
    def is_in_progress(self) -> bool:
        return self.status == STATUS_IN_PROGRESS

    @classmethod
    def from_graph(cls, definition_id: str, item: Mapping[str, Any]) -> Instance:
        return cls(
            definition_id=definition_id,
            id=str(item.get("id", "")),
            # Unknown or missing statuses are kept as they are and count as not active.
            status=str(item.get("status") or "Unknown"),
            start_date_time=_optional_str(item.get("startDateTime")),
            end_date_time=_optional_str(item.get("endDateTime")),
        )


@dataclass(frozen=True)
class _ErrorDetails:
    code: str
    message: str
    request_id: str | None


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _require_guid(name: str, value: str) -> str:
    # Ids go into URL paths under a privileged token: anything but a GUID could steer the request
    # to another Graph resource.
    if not is_guid(value):
        raise ValueError(f"{name} must be a GUID, got {value!r}")
    return value.lower()


def definition_path(definition_id: str) -> str:
    """Path of a definition, relative to the Graph root and API version."""
    return f"{DEFINITIONS_PATH}/{_require_guid('definition_id', definition_id)}"


def instance_path(definition_id: str, instance_id: str) -> str:
    """Path of an instance, relative to the Graph root and API version."""
    instance = _require_guid("instance_id", instance_id)
    return f"{definition_path(definition_id)}/instances/{instance}"


def odata_filter(expression: str) -> str:
    """Build a `$filter` query parameter, percent-encoded as Graph expects in batch URLs too."""
    return "$filter=" + quote(expression, safe="'")


@dataclass(frozen=True)
class Reply:
    """A Graph response, from a direct call or from one entry of a JSON batch."""

    status: int
    headers: Mapping[str, str]
    body: Any
    reason: str = ""

    @property
    def request_id(self) -> str | None:
        return _optional_str(self.headers.get("request-id"))

    @classmethod
    def from_response(cls, response: httpx.Response) -> Reply:
        try:
            body = response.json() if response.content else None
        except ValueError:
            body = None
        headers = {name.lower(): value for name, value in response.headers.items()}
        return cls(response.status_code, headers, body, response.reason_phrase)


def parse_error_reply(reply: Reply) -> _ErrorDetails:
    """Read Graph's error envelope, tolerating empty codes, missing fields and non-JSON bodies."""
    request_id = reply.request_id
    error = reply.body.get("error") if isinstance(reply.body, dict) else None
    if not isinstance(error, dict):
        # An HTML page from a proxy, an empty body or some other JSON: keep only the status text.
        return _ErrorDetails("", reply.reason, request_id)

    code = error.get("code")
    message = error.get("message")
    inner = error.get("innerError") or error.get("innererror")
    if not request_id and isinstance(inner, dict):
        request_id = _optional_str(inner.get("request-id"))
    text = message if isinstance(message, str) and message else reply.reason
    return _ErrorDetails(
        code if isinstance(code, str) else "",
        text[:MAX_ERROR_MESSAGE_CHARS],
        request_id,
    )


def parse_error(response: httpx.Response) -> _ErrorDetails:
    """Read the error envelope of a direct response."""
    return parse_error_reply(Reply.from_response(response))


def is_retryable(method: str, status: int) -> bool:
    """Tell whether a request that got `status` may be sent again."""
    return status in _THROTTLE_STATUSES or (method == "GET" and status in _READ_RETRY_STATUSES)


def signals_throttling(failure: GraphError, retry_after_s: float | None) -> bool:
    """Tell whether a failure means the app's throttle bucket is empty, so that everyone waits.

    That is a 429, or a 503 that gives how long to wait.
    """
    return failure.status == 429 or (failure.status == 503 and retry_after_s is not None)


def error_for(method: str, url: str, reply: Reply, now: float) -> GraphError:
    """Translate an error reply into the matching GraphError subclass."""
    details = parse_error_reply(reply)
    status = reply.status
    fields: dict[str, Any] = {
        "method": method,
        "url": url,
        "status": status,
        "code": details.code,
        "request_id": details.request_id,
    }
    if status in (401, 403):
        return GraphPermissionError(details.message, **fields)
    if status == 404:
        return GraphNotFoundError(details.message, **fields)
    if status in _THROTTLE_STATUSES:
        retry_after_s = parse_retry_after(reply.headers.get("retry-after"), now=now)
        return GraphThrottledError(details.message, retry_after_s=retry_after_s, **fields)
    if method == "POST" and status == 504:
        return GraphUnknownOutcomeError(details.message, **fields)
    return GraphError(details.message, **fields)


class GraphClient:
    """Calls the access reviews API of Graph v1.0 with retries within a per-request budget.

    One instance, with one `httpx.AsyncClient` and one pacer, serves a whole process. At most
    `settings.max_concurrency` HTTP requests are in flight at once, across every caller. With
    `batching` on, `call` groups concurrent requests into JSON batches of up to 20.
    """

    def __init__(
        self,
        settings: Settings,
        tokens: TokenSource,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
        pacer: Pacer | None = None,
        batching: bool = True,
    ) -> None:
        self.root = f"{settings.graph_endpoint}/{API_VERSION}"
        self._timeout_s = settings.timeout_s
        self._origin = urlsplit(settings.graph_endpoint)[:2]
        self._tokens = tokens
        self.clock = clock or SystemClock()
        self.retry = retry or RetryPolicy(budget_s=settings.retry_budget_s)
        self.pacer = pacer or Pacer(self.clock)
        self.slots = asyncio.Semaphore(settings.max_concurrency)
        self.max_concurrency = settings.max_concurrency
        self._batcher: Batcher | None = None
        if batching:
            # Imported here because batch.py builds on this module's Reply and helpers.
            from .batch import Batcher

            self._batcher = Batcher(self)
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(settings.timeout_s, connect=DEFAULT_CONNECT_TIMEOUT_S),
            limits=httpx.Limits(
                max_connections=settings.max_concurrency,
                max_keepalive_connections=settings.max_concurrency,
            ),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            # Graph does not redirect these calls, and a redirect must not carry the token away.
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        if self._batcher is not None:
            self._batcher.cancel()
        await self._http.aclose()

    @property
    def batches_sent(self) -> int:
        """How many JSON batches this client has sent."""
        return self._batcher.batches_sent if self._batcher is not None else 0

    async def _send_once(
        self,
        method: str,
        url: str,
        json_body: object,
        client_request_id: str,
        *,
        paced_count: int,
        hold_slot: bool,
        timeout_s: float,
    ) -> httpx.Response:
        token = await self._tokens.get_token()
        headers = {"Authorization": f"Bearer {token}", "client-request-id": client_request_id}
        timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, DEFAULT_CONNECT_TIMEOUT_S))
        if not hold_slot:
            await self.pacer.acquire(paced_count)
            return await self._http.request(
                method, url, json=json_body, headers=headers, timeout=timeout
            )
        async with self.slots:
            await self.pacer.acquire(paced_count)
            return await self._http.request(
                method, url, json=json_body, headers=headers, timeout=timeout
            )

    async def request(
        self,
        method: str,
        url: str,
        *,
        json_body: object = None,
        paced_count: int = 1,
        hold_slot: bool = True,
    ) -> Reply:
        """Send one HTTP request, retrying what is safe to retry, and return the 2xx reply.

        Raises a GraphError subclass for every other outcome. `paced_count` is how many
        requests Graph counts against the throttle bucket (the entries of a batch).
        `hold_slot=False` means the caller has already taken one of the concurrency slots.
        """
        started = self.clock.monotonic()
        attempt = 0
        while True:
            attempt += 1
            client_request_id = str(uuid.uuid4())
            # Retries are cut short so that the whole request ends within the retry budget.
            elapsed_s = self.clock.monotonic() - started if attempt > 1 else 0.0
            try:
                response = await self._send_once(
                    method,
                    url,
                    json_body,
                    client_request_id,
                    paced_count=paced_count,
                    hold_slot=hold_slot,
                    timeout_s=self.retry.attempt_timeout(self._timeout_s, elapsed_s),
                )
            except httpx.TransportError as exc:
                if method != "GET" and not isinstance(exc, _NOT_SENT_ERRORS):
                    raise GraphUnknownOutcomeError(
                        f"{type(exc).__name__} after the request was sent",
                        method=method,
                        url=url,
                        request_id=client_request_id,
                    ) from exc
                failure: GraphError = GraphConnectionError(
                    type(exc).__name__, method=method, url=url, request_id=client_request_id
                )
                retry_after_s = None
                cause: BaseException | None = exc
            else:
                reply = Reply.from_response(response)
                if response.is_success:
                    if paced_count == 1:
                        self.pacer.record_success()
                    return reply
                failure = error_for(method, url, reply, self.clock.time())
                if not is_retryable(method, reply.status):
                    raise failure
                retry_after_s = None
                if isinstance(failure, GraphThrottledError):
                    retry_after_s = failure.retry_after_s
                cause = None

            elapsed_s = self.clock.monotonic() - started
            wait_s = self.retry.next_wait(attempt, retry_after_s, elapsed_s)
            if signals_throttling(failure, retry_after_s):
                self.pacer.record_throttled(wait_s if wait_s is not None else retry_after_s)
            if wait_s is None:
                raise failure from cause
            logger.warning(
                "Retrying Graph %s %s in %.2f s (attempt %d failed: %s)",
                method,
                strip_query(url),
                wait_s,
                attempt,
                failure.status or failure.graph_message,
                extra={
                    "url": strip_query(url),
                    "attempt": attempt,
                    "request_id": failure.request_id,
                },
            )
            await self.clock.sleep(wait_s)

    async def call(self, method: str, path: str) -> Reply:
        """Send a request for `path` (relative to /v1.0), batched with others when batching is on.

        Returns the 2xx reply, or raises the same GraphError subclasses as a direct request.
        """
        if self._batcher is not None:
            return await self._batcher.call(method, path)
        return await self.request(method, self.root + path)

    async def _get_object(self, path: str) -> dict[str, Any]:
        reply = await self.call("GET", path)
        if not isinstance(reply.body, dict):
            raise GraphError(
                "the response body is not a JSON object",
                method="GET",
                url=self.root + path,
                status=reply.status,
                request_id=reply.request_id,
            )
        return reply.body

    def _next_path(self, link: object, current: str) -> str | None:
        if link is None:
            return None
        # The token goes wherever the link points, so the link must stay on the Graph endpoint.
        if (
            not isinstance(link, str)
            or urlsplit(link)[:2] != self._origin
            or not link.startswith(self.root + "/")
            or link == self.root + current
        ):
            raise GraphError(
                f"invalid @odata.nextLink {link!r}: it must be a new URL on the Graph endpoint",
                method="GET",
                url=self.root + current,
            )
        return link[len(self.root) :]

    async def iter_collection(self, path: str) -> AsyncIterator[dict[str, Any]]:
        """Yield every item of a collection, following `@odata.nextLink` exactly as given."""
        next_path: str | None = path
        while next_path is not None:
            page = await self._get_object(next_path)
            items = page.get("value", [])
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict):
                    yield item
            next_path = self._next_path(page.get("@odata.nextLink"), next_path)

    async def list_definitions(self) -> AsyncIterator[Definition]:
        """Yield every access review definition in the tenant, skipping items without a GUID id."""
        async for item in self.iter_collection(DEFINITIONS_PATH):
            definition = Definition.from_graph(item)
            if definition is None:
                logger.error(
                    "Skipped a definition whose id is not a GUID: %r", str(item.get("id"))[:64]
                )
                continue
            yield definition

    async def list_definition_ids(self) -> AsyncIterator[str]:
        """Yield the id of every access review definition in the tenant."""
        async for definition in self.list_definitions():
            yield definition.id

    async def get_definition(self, definition_id: str) -> Definition:
        """Fetch one definition. Raises GraphNotFoundError when it does not exist."""
        body = await self._get_object(definition_path(definition_id))
        definition = Definition.from_graph({**body, "id": definition_id})
        if definition is None:
            raise ValueError(f"definition_id must be a GUID, got {definition_id!r}")
        return definition

    async def list_instances(
        self, definition_id: str, status: str | None = STATUS_IN_PROGRESS
    ) -> AsyncIterator[Instance]:
        """Yield the instances of a definition, filtered on `status` by Graph when one is given."""
        path = f"{definition_path(definition_id)}/instances"
        if status:
            path += "?" + odata_filter(f"status eq '{status}'")
        async for item in self.iter_collection(path):
            yield Instance.from_graph(definition_id.lower(), item)

    async def get_instance(self, definition_id: str, instance_id: str) -> Instance:
        """Fetch one instance. Raises GraphNotFoundError when it or its definition is missing."""
        body = await self._get_object(instance_path(definition_id, instance_id))
        return Instance.from_graph(definition_id.lower(), body)

    async def _any_not_reviewed(self, decisions_path: str) -> bool:
        query = odata_filter(f"decision eq '{DECISION_NOT_REVIEWED}'") + "&$top=1"
        page = await self._get_object(f"{decisions_path}?{query}")
        items = page.get("value")
        return isinstance(items, list) and len(items) > 0

    async def has_pending_decisions(self, instance: Instance, *, multi_stage: bool) -> bool:
        """Tell whether any reviewer of the instance still has a decision to make.

        A multi-stage review is checked in its InProgress stage, because decisions of earlier
        stages are closed.
        """
        path = instance_path(instance.definition_id, instance.id)
        if not multi_stage:
            return await self._any_not_reviewed(f"{path}/decisions")

        stages_query = odata_filter(f"status eq '{STATUS_IN_PROGRESS}'")
        async for stage in self.iter_collection(f"{path}/stages?{stages_query}"):
            stage_id = stage.get("id")
            if isinstance(stage_id, str) and stage.get("status") == STATUS_IN_PROGRESS:
                stage_path = f"{path}/stages/{quote(stage_id, safe='')}"
                if await self._any_not_reviewed(f"{stage_path}/decisions"):
                    return True
        return False

    async def send_reminder(self, definition_id: str, instance_id: str) -> str | None:
        """Remind the reviewers of an instance who have not yet decided, and return the request-id.

        Graph returns 204 only for an instance that is in progress.
        """
        reply = await self.call("POST", f"{instance_path(definition_id, instance_id)}/sendReminder")
        return reply.request_id
