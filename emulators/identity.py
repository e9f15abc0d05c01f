"""Emulate the App Service managed identity token endpoint that Azure Functions exposes.

azure-identity 1.27 hands this protocol to msal's ManagedIdentityClient (msal 1.39), which
selects it when IDENTITY_ENDPOINT and IDENTITY_HEADER are set and sends
`GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=...` with the headers
`X-IDENTITY-HEADER: {IDENTITY_HEADER}` and `Metadata: true`. A user-assigned identity adds
one of `client_id`, `object_id` or `mi_res_id`. msal reads `access_token`, `expires_on` and
`token_type` from a success, and `statusCode` and `message` from any JSON body without a token.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import parse_qsl

from emulators._http import IncomingRequest, LoopbackServer, OutgoingResponse, json_response
from emulators.faults import ANY_METHOD, Fault, FaultQueue, fault_response

logger = logging.getLogger(__name__)

ENDPOINT_PATH = "/msi/token"
API_VERSION = "2019-08-01"
DEFAULT_TOKEN_LIFETIME_S = 3600
SYSTEM_ASSIGNED_CLIENT_ID = "5a5a0000-0000-4000-8000-00000000a11d"
IDENTITY_SELECTORS = ("client_id", "object_id", "mi_res_id")

# Derives a stable client_id for identities selected by object_id or mi_res_id.
_DERIVED_CLIENT_ID_NAMESPACE = uuid.UUID("6f0c1a52-3b7e-4c9d-9a41-2d8e5f7b0c13")


def _same_resource(left: str, right: str) -> bool:
    return left.rstrip("/").lower() == right.rstrip("/").lower()


def _error(status: int, message: str) -> OutgoingResponse:
    payload = {"statusCode": status, "message": message, "correlationId": str(uuid.uuid4())}
    return json_response(status, payload)


@dataclass(frozen=True)
class TokenRequest:
    """Record of one request to the token endpoint. The issued token itself is never kept."""

    resource: str | None
    client_id: str | None
    object_id: str | None
    mi_res_id: str | None
    status: int


@dataclass(frozen=True)
class _IssuedToken:
    resource: str
    client_id: str
    expires_on: int


class IdentityEmulator:
    """Managed identity token endpoint on 127.0.0.1 that issues random opaque tokens.

    Tokens are valid for `token_lifetime_s` seconds (0 issues tokens that are already
    expired). When `known_client_ids` is given, a request for any other `client_id` gets 400,
    as on a Function App that has no such user-assigned identity.
    """

    def __init__(
        self,
        *,
        identity_header: str | None = None,
        token_lifetime_s: int = DEFAULT_TOKEN_LIFETIME_S,
        known_client_ids: Iterable[str] | None = None,
        port: int = 0,
    ) -> None:
        self._identity_header = identity_header or secrets.token_urlsafe(24)
        self._known_client_ids = (
            None if known_client_ids is None else {cid.lower() for cid in known_client_ids}
        )
        self._lock = threading.Lock()
        self._token_lifetime_s = token_lifetime_s
        self._tokens: dict[str, _IssuedToken] = {}
        self._token_requests: list[TokenRequest] = []
        self._faults = FaultQueue()
        self._server = LoopbackServer("identity emulator", self._serve, port=port)

    @property
    def endpoint(self) -> str:
        """URL for IDENTITY_ENDPOINT, such as "http://127.0.0.1:50124/msi/token"."""
        return self._server.origin + ENDPOINT_PATH

    @property
    def identity_header(self) -> str:
        """Secret for IDENTITY_HEADER that requests must send in X-IDENTITY-HEADER."""
        return self._identity_header

    @property
    def token_lifetime_s(self) -> int:
        """Lifetime in seconds of tokens issued from now on."""
        with self._lock:
            return self._token_lifetime_s

    @token_lifetime_s.setter
    def token_lifetime_s(self, seconds: int) -> None:
        with self._lock:
            self._token_lifetime_s = seconds

    @property
    def token_requests(self) -> list[TokenRequest]:
        """Copy of the token requests received so far, oldest first."""
        with self._lock:
            return list(self._token_requests)

    @property
    def issued_tokens(self) -> list[str]:
        """Copy of every token issued so far, so that tests can check that none leaks into logs."""
        with self._lock:
            return list(self._tokens)

    def start(self) -> IdentityEmulator:
        """Start serving and return self."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving. Issued tokens stay valid for `verify_token`."""
        self._server.stop()

    def fail(
        self,
        status: int,
        times: int = 1,
        *,
        retry_after: str | None = None,
        body: bytes | str | None = None,
        reset: bool = False,
        probability: float = 1.0,
        seed: int | None = None,
    ) -> None:
        """Return `status` instead of a token to the next `times` token requests.

        Without `body`, the response has the endpoint's JSON error shape. `reset`,
        `probability` and `seed` work as in `Fault`. NOTE: msal 1.39
        (throttled_http_client.py) caches a 429 or 5xx response, or any response with
        Retry-After, for the header's integer seconds or else 5 s. It replays that response to
        a repeat of the same request, so such a repeat from msal never reaches this server.
        azure-core's retry policy inside the credential does reach it.
        """
        self._faults.add(
            Fault(
                ANY_METHOD,
                "",
                status,
                retry_after=retry_after,
                times=times,
                body=body,
                reset=reset,
                probability=probability,
                seed=seed,
            )
        )

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        self._faults.clear()

    def verify_token(self, token: str, resource: str) -> str | None:
        """Return why `token` is not valid for `resource`, or None when it is valid."""
        with self._lock:
            issued = self._tokens.get(token)
        if issued is None:
            return "The access token was not issued by the identity emulator."
        if not _same_resource(issued.resource, resource):
            return (
                f"The access token was issued for resource {issued.resource!r}, "
                f"but this API expects {resource!r}."
            )
        if time.time() >= issued.expires_on:
            return f"The access token expired at Unix time {issued.expires_on}."
        return None

    def _serve(self, request: IncomingRequest) -> OutgoingResponse:
        query = dict(parse_qsl(request.raw_query, keep_blank_values=True))
        fault = self._faults.take(request.method, request.path)
        if fault is not None:
            response = self._fault_response(fault)
        else:
            response = self._issue_token(request, query)

        record = TokenRequest(
            resource=query.get("resource"),
            client_id=query.get("client_id"),
            object_id=query.get("object_id"),
            mi_res_id=query.get("mi_res_id"),
            status=response.status,
        )
        with self._lock:
            self._token_requests.append(record)
        logger.info(
            "Token request for resource %s (client_id %s) -> %d",
            record.resource,
            record.client_id,
            response.status,
        )
        return response

    def _fault_response(self, fault: Fault) -> OutgoingResponse:
        return fault_response(
            fault,
            lambda scripted: _error(
                scripted.status, "The identity emulator returned a scripted error."
            ),
        )

    def _issue_token(self, request: IncomingRequest, query: dict[str, str]) -> OutgoingResponse:
        if request.path.rstrip("/") != ENDPOINT_PATH:
            return _error(
                404, f"No endpoint at {request.path}; tokens are served at {ENDPOINT_PATH}."
            )
        if request.method != "GET":
            response = _error(405, f"The token endpoint accepts GET, not {request.method}.")
            response.headers["Allow"] = "GET"
            return response

        sent_header = request.header("x-identity-header")
        if sent_header is None:
            return _error(400, "The X-IDENTITY-HEADER header is missing.")
        if not secrets.compare_digest(sent_header.encode(), self._identity_header.encode()):
            return _error(401, "The X-IDENTITY-HEADER value does not match IDENTITY_HEADER.")

        api_version = query.get("api-version")
        if api_version != API_VERSION:
            return _error(400, f"api-version must be {API_VERSION}, got {api_version!r}.")
        resource = query.get("resource", "")
        if not resource:
            return _error(400, "The resource query parameter is missing or empty.")

        selectors = [name for name in IDENTITY_SELECTORS if query.get(name)]
        if len(selectors) > 1:
            return _error(400, f"Send at most one of {', '.join(IDENTITY_SELECTORS)}.")
        client_id = self._resolve_client_id(query, selectors)
        if client_id is None:
            return _error(
                400,
                f"No user-assigned identity with client_id {query['client_id']} "
                "is assigned to this app.",
            )

        with self._lock:
            expires_on = int(time.time()) + self._token_lifetime_s
            token = secrets.token_urlsafe(32)
            self._tokens[token] = _IssuedToken(resource, client_id, expires_on)
        payload = {
            "access_token": token,
            "expires_on": str(expires_on),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client_id,
        }
        return json_response(200, payload)

    def _resolve_client_id(self, query: dict[str, str], selectors: list[str]) -> str | None:
        if not selectors:
            return SYSTEM_ASSIGNED_CLIENT_ID
        name = selectors[0]
        value = query[name]
        if name != "client_id":
            return str(uuid.uuid5(_DERIVED_CLIENT_ID_NAMESPACE, value.lower()))
        if self._known_client_ids is not None and value.lower() not in self._known_client_ids:
            return None
        return value
