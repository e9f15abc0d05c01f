from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from review_reminders.auth import TOKEN_REFRESH_MARGIN_S, ManagedIdentityTokenProvider
from review_reminders.errors import TokenError
from tests.conftest import FakeClock

SCOPE = "https://graph.microsoft.com/.default"
CLIENT_ID = "33333333-3333-3333-3333-333333333333"


class CountingCredential:
    """A TokenCredential stand-in that counts calls and can be set to fail."""

    def __init__(self, clock: FakeClock, lifetime_s: float = 3600, fail: bool = False) -> None:
        self.clock = clock
        self.lifetime_s = lifetime_s
        self.fail = fail
        self.calls = 0
        self.release = threading.Event()
        self.release.set()

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        self.release.wait(timeout=5)
        if self.fail:
            raise ClientAuthenticationError("identity endpoint answered 500\nsecond line")
        return AccessToken(f"token-{self.calls}", int(self.clock.time() + self.lifetime_s))


async def test_concurrent_first_calls_fetch_once(clock: FakeClock) -> None:
    credential = CountingCredential(clock)
    credential.release.clear()
    provider = ManagedIdentityTokenProvider(SCOPE, clock=clock, credential=credential)  # type: ignore[arg-type]

    waiting = [asyncio.create_task(provider.get_token()) for _ in range(20)]
    await asyncio.sleep(0)
    credential.release.set()
    tokens = await asyncio.gather(*waiting)

    assert credential.calls == 1
    assert set(tokens) == {"token-1"}


async def test_cached_token_reused(clock: FakeClock) -> None:
    credential = CountingCredential(clock)
    provider = ManagedIdentityTokenProvider(SCOPE, clock=clock, credential=credential)  # type: ignore[arg-type]
    await provider.get_token()
    clock.now += 3600 - TOKEN_REFRESH_MARGIN_S - 60
    assert await provider.get_token() == "token-1"
    assert credential.calls == 1


async def test_token_refreshed_before_expiry(clock: FakeClock) -> None:
    credential = CountingCredential(clock)
    provider = ManagedIdentityTokenProvider(SCOPE, clock=clock, credential=credential)  # type: ignore[arg-type]
    await provider.get_token()
    clock.now += 3600 - TOKEN_REFRESH_MARGIN_S + 1
    assert await provider.get_token() == "token-2"


async def test_failure_raises_token_error(clock: FakeClock) -> None:
    credential = CountingCredential(clock, fail=True)
    provider = ManagedIdentityTokenProvider(
        SCOPE,
        CLIENT_ID,
        clock=clock,
        credential=credential,  # type: ignore[arg-type]
    )
    with pytest.raises(TokenError) as caught:
        await provider.get_token()
    message = str(caught.value)
    assert CLIENT_ID in message
    assert "user-assigned" in message
    assert "second line" not in message
    assert isinstance(caught.value.__cause__, ClientAuthenticationError)


async def test_failure_not_cached(clock: FakeClock) -> None:
    credential = CountingCredential(clock, fail=True)
    provider = ManagedIdentityTokenProvider(SCOPE, clock=clock, credential=credential)  # type: ignore[arg-type]
    with pytest.raises(TokenError):
        await provider.get_token()
    credential.fail = False
    assert await provider.get_token() == "token-2"


async def test_token_absent_from_logs(clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    credential = CountingCredential(clock)
    provider = ManagedIdentityTokenProvider(SCOPE, clock=clock, credential=credential)  # type: ignore[arg-type]
    token = await provider.get_token()
    assert token not in caplog.text
    assert token not in repr(provider)
