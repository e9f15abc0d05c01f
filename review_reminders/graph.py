"""Microsoft Graph client for access reviews: requests, retries, error parsing and paging."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

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
from .retry import Clock, RetryPolicy, SystemClock, parse_retry_after
from .settings import Settings, is_guid

logger = logging.getLogger(__name__)

API_VERSION = "v1.0"
USER_AGENT = "access-review-reminders/0.1"
STATUS_IN_PROGRESS = "InProgress"
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


def parse_error(response: httpx.Response) -> _ErrorDetails:
    """Read Graph's error envelope, tolerating empty codes, missing fields and non-JSON bodies."""
    request_id = response.headers.get("request-id")
    try:
        body = response.json()
    except ValueError:
        body = None

    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        # An HTML page from a proxy, an empty body or some other JSON: keep only the status text.
        return _ErrorDetails("", response.reason_phrase, request_id)

    code = error.get("code")
    message = error.get("message")
    inner = error.get("innerError") or error.get("innererror")
    if not request_id and isinstance(inner, dict):
        request_id = _optional_str(inner.get("request-id"))
    text = message if isinstance(message, str) and message else response.reason_phrase
    return _ErrorDetails(
        code if isinstance(code, str) else "",
        text[:MAX_ERROR_MESSAGE_CHARS],
        request_id,
    )


def _error_for(method: str, url: str, response: httpx.Response, now: float) -> GraphError:
    details = parse_error(response)
    status = response.status_code
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
        retry_after_s = parse_retry_after(response.headers.get("Retry-After"), now=now)
        return GraphThrottledError(details.message, retry_after_s=retry_after_s, **fields)
    if method == "POST" and status == 504:
        return GraphUnknownOutcomeError(details.message, **fields)
    return GraphError(details.message, **fields)


class GraphClient:
    """Calls the access reviews API of Graph v1.0 with retries within a per-request budget.

    One instance, with one `httpx.AsyncClient`, serves a whole process. At most
    `settings.max_concurrency` requests are in flight at once, across every caller.
    """

    def __init__(
        self,
        settings: Settings,
        tokens: TokenSource,
        *,
        http: httpx.AsyncClient | None = None,
        clock: Clock | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._root = f"{settings.graph_endpoint}/{API_VERSION}"
        self._origin = urlsplit(settings.graph_endpoint)[:2]
        self._tokens = tokens
        self._clock = clock or SystemClock()
        self._retry = retry or RetryPolicy(budget_s=settings.retry_budget_s)
        self._slots = asyncio.Semaphore(settings.max_concurrency)
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
        await self._http.aclose()

    async def _send_once(
        self, method: str, url: str, params: Mapping[str, str] | None, client_request_id: str
    ) -> httpx.Response:
        token = await self._tokens.get_token()
        headers = {"Authorization": f"Bearer {token}", "client-request-id": client_request_id}
        async with self._slots:
            return await self._http.request(method, url, params=params, headers=headers)

    async def request(
        self, method: str, url: str, params: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """Send one request, retrying what is safe to retry, and return the 2xx response.

        Raises a GraphError subclass for every other outcome.
        """
        started = self._clock.monotonic()
        attempt = 0
        while True:
            attempt += 1
            client_request_id = str(uuid.uuid4())
            try:
                response = await self._send_once(method, url, params, client_request_id)
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
                if response.is_success:
                    return response
                failure = _error_for(method, url, response, self._clock.time())
                retryable = response.status_code in _THROTTLE_STATUSES or (
                    method == "GET" and response.status_code in _READ_RETRY_STATUSES
                )
                if not retryable:
                    raise failure
                retry_after_s = (
                    failure.retry_after_s if isinstance(failure, GraphThrottledError) else None
                )
                cause = None

            elapsed_s = self._clock.monotonic() - started
            wait_s = self._retry.next_wait(attempt, retry_after_s, elapsed_s)
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
            await self._clock.sleep(wait_s)

    async def _get_json(self, url: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        response = await self.request("GET", url, params)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise GraphError(
                "the response body is not a JSON object",
                method="GET",
                url=url,
                status=response.status_code,
                request_id=response.headers.get("request-id"),
            )
        return body

    def _check_next_link(self, link: object, current: str) -> str | None:
        if link is None:
            return None
        # The token goes wherever the link points, so the link must stay on the Graph endpoint.
        if not isinstance(link, str) or urlsplit(link)[:2] != self._origin or link == current:
            raise GraphError(
                f"invalid @odata.nextLink {link!r}: it must be a new URL on the Graph endpoint",
                method="GET",
                url=current,
            )
        return link

    async def iter_collection(
        self, url: str, params: Mapping[str, str] | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Yield every item of a collection, following `@odata.nextLink` exactly as given."""
        next_url: str | None = url
        next_params = params
        while next_url is not None:
            page = await self._get_json(next_url, next_params)
            items = page.get("value", [])
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict):
                    yield item
            next_url = self._check_next_link(page.get("@odata.nextLink"), next_url)
            next_params = None

    def _definitions_url(self) -> str:
        return f"{self._root}/identityGovernance/accessReviews/definitions"

    def _instance_url(self, definition_id: str, instance_id: str) -> str:
        definition = _require_guid("definition_id", definition_id)
        instance = _require_guid("instance_id", instance_id)
        return f"{self._definitions_url()}/{definition}/instances/{instance}"

    async def list_definitions(self) -> AsyncIterator[Definition]:
        """Yield every access review definition in the tenant, skipping items without a GUID id."""
        async for item in self.iter_collection(self._definitions_url()):
            definition_id = item.get("id")
            if isinstance(definition_id, str) and is_guid(definition_id):
                name = item.get("displayName")
                yield Definition(definition_id.lower(), name if isinstance(name, str) else "")

    async def list_definition_ids(self) -> AsyncIterator[str]:
        """Yield the id of every access review definition in the tenant."""
        async for definition in self.list_definitions():
            yield definition.id

    async def list_instances(
        self, definition_id: str, status: str | None = STATUS_IN_PROGRESS
    ) -> AsyncIterator[Instance]:
        """Yield the instances of a definition, filtered on `status` by Graph when one is given."""
        definition = _require_guid("definition_id", definition_id)
        url = f"{self._definitions_url()}/{definition}/instances"
        params = {"$filter": f"status eq '{status}'"} if status else None
        async for item in self.iter_collection(url, params):
            yield Instance.from_graph(definition, item)

    async def get_instance(self, definition_id: str, instance_id: str) -> Instance:
        """Fetch one instance. Raises GraphNotFoundError when it or its definition is missing."""
        body = await self._get_json(self._instance_url(definition_id, instance_id))
        return Instance.from_graph(definition_id.lower(), body)

    async def send_reminder(self, definition_id: str, instance_id: str) -> str | None:
        """Remind the reviewers of an instance who have not yet decided, and return the request-id.

        Graph returns 204 only for an instance that is in progress.
        """
        url = f"{self._instance_url(definition_id, instance_id)}/sendReminder"
        response = await self.request("POST", url)
        request_id: str | None = response.headers.get("request-id")
        return request_id
