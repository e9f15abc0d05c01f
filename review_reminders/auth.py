"""App-only tokens for Graph from the function app's managed identity."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING, Protocol

from .errors import TokenError
from .retry import Clock, SystemClock

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken, TokenCredential

logger = logging.getLogger(__name__)

# Fetch a new token this long before the cached one expires, so that no request carries a token
# that expires in flight. Managed-identity tokens live for hours, so this costs little.
TOKEN_REFRESH_MARGIN_S = 300.0
# A token request that takes longer fails, so that a stalled identity endpoint cannot hold a
# request (and every other one waiting for the token) for minutes.
TOKEN_TIMEOUT_S = 20.0


class TokenSource(Protocol):
    """Anything that returns a bearer token for Graph; the Graph client depends on this alone."""

    async def get_token(self) -> str: ...


def describe_identity(client_id: str | None) -> str:
    """Name the managed identity in words an admin can look up in the portal."""
    if client_id:
        return f"user-assigned managed identity with client id {client_id}"
    return "system-assigned managed identity"


class CachedTokenSource:
    """Token cache for one scope, around a synchronous azure-identity credential.

    The credential runs in a worker thread: azure-identity's asyncio credentials need aiohttp,
    a second HTTP stack for about one request an hour. A lock makes concurrent callers share
    a single token request, and a token is renewed TOKEN_REFRESH_MARGIN_S before it expires.
    Subclasses fetch the token in `_fetch` and name the error for a fetch that times out.
    """

    def __init__(self, scope: str, *, clock: Clock | None = None) -> None:
        self._scope = scope
        self._clock = clock or SystemClock()
        self._token: AccessToken | None = None
        self._lock = asyncio.Lock()

    def _is_fresh(self, token: AccessToken | None) -> bool:
        return token is not None and token.expires_on - TOKEN_REFRESH_MARGIN_S > self._clock.time()

    async def get_token(self) -> str:
        """Return a bearer token for the scope, fetching one only when the cached one is stale."""
        token = self._token
        if token is not None and self._is_fresh(token):
            return token.token
        async with self._lock:
            token = self._token
            if token is None or not self._is_fresh(token):
                token = await self._fetch_with_timeout()
                self._token = token
        return token.token

    async def _fetch_with_timeout(self) -> AccessToken:
        # NOTE: a timed-out fetch keeps its worker thread until the credential's own HTTP
        # timeout ends it. The caller gets its error at once all the same.
        try:
            return await asyncio.wait_for(asyncio.to_thread(self._fetch), TOKEN_TIMEOUT_S)
        except TimeoutError:
            raise self._timeout_error() from None

    def _fetch(self) -> AccessToken:
        raise NotImplementedError

    def _timeout_error(self) -> Exception:
        raise NotImplementedError


class ManagedIdentityTokenProvider(CachedTokenSource):
    """Token cache for one scope, filled by azure-identity's ManagedIdentityCredential.

    On App Service and Azure Functions the credential reads `IDENTITY_ENDPOINT` and
    `IDENTITY_HEADER`.
    """

    def __init__(
        self,
        scope: str,
        client_id: str | None = None,
        *,
        clock: Clock | None = None,
        credential: TokenCredential | None = None,
    ) -> None:
        super().__init__(scope, clock=clock)
        self._client_id = client_id
        self._credential = credential

    def __repr__(self) -> str:
        return f"ManagedIdentityTokenProvider(scope={self._scope!r}, client_id={self._client_id!r})"

    @property
    def identity(self) -> str:
        return describe_identity(self._client_id)

    def _timeout_error(self) -> Exception:
        logger.warning(
            "Token request for %s timed out after %.0f s with the %s",
            self._scope,
            TOKEN_TIMEOUT_S,
            self.identity,
            extra={"scope": self._scope, "client_id": self._client_id},
        )
        return TokenError(
            self.identity,
            self._scope,
            f"the managed identity endpoint did not answer within {TOKEN_TIMEOUT_S:.0f} s",
        )

    def _fetch(self) -> AccessToken:
        from azure.core.exceptions import AzureError

        credential = self._get_credential()
        try:
            token = credential.get_token(self._scope)
        except (AzureError, ValueError) as exc:
            # ValueError: an endpoint that returns 200 with something other than a token.
            logger.warning(
                "Token request for %s failed with the %s: %s",
                self._scope,
                self.identity,
                type(exc).__name__,
                extra={"scope": self._scope, "client_id": self._client_id},
            )
            raise TokenError(self.identity, self._scope, redact(first_line(exc))) from exc
        logger.info(
            "Got a token for %s from the %s",
            self._scope,
            self.identity,
            extra={"scope": self._scope, "client_id": self._client_id},
        )
        return token

    def _get_credential(self) -> TokenCredential:
        if self._credential is None:
            # Imported here: azure-identity takes longer to import than the whole function app.
            from azure.identity import ManagedIdentityCredential

            self._credential = ManagedIdentityCredential(client_id=self._client_id)
        return self._credential

    async def close(self) -> None:
        """Close the credential's HTTP session, if one was opened."""
        credential = self._credential
        close = getattr(credential, "close", None)
        if close is not None:
            await asyncio.to_thread(close)


def redact(text: str) -> str:
    """Replace the identity endpoint's secret header in `text`, which may reach HTTP callers."""
    secret = os.environ.get("IDENTITY_HEADER", "")
    return text.replace(secret, "***") if len(secret) >= 8 else text


def first_line(exc: BaseException) -> str:
    """Return the first line of an exception's message, or its type when it has none."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
