"""Shared fixtures: a loopback-only network guard, a clean environment and a fake clock."""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from review_reminders import runtime
from review_reminders.settings import APP_SETTING_NAMES

# Azurite, started once per session from node_modules, and the end-to-end fixtures.
pytest_plugins = ["tests.azurite", "tests.functions_support"]

_ENV_PREFIXES = ("AZURE_", "MSI_", "IDENTITY_", "IMDS_", "MSAL_", "AzureWebJobs")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def _is_loopback(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if not isinstance(host, str):
        return False
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        raise ConnectionRefusedError(f"tests may only connect to loopback, not {address[0]!r}")
    return _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> Any:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
        raise ConnectionRefusedError(f"tests may only connect to loopback, not {address[0]!r}")
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
    if host is not None and not _is_loopback(host):
        raise socket.gaierror(f"tests may only resolve loopback names, not {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


# Installed at import, before any test or fixture runs: nothing in the suite may leave loopback,
# and in particular azure-identity must never reach the instance metadata address.
socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
socket.getaddrinfo = _guarded_getaddrinfo


def clean_environ() -> dict[str, str]:
    """Return os.environ without credential variables and without the app's own settings."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(_ENV_PREFIXES) and name not in APP_SETTING_NAMES
    }


@pytest.fixture(autouse=True)
def _isolated_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(_ENV_PREFIXES) or name in APP_SETTING_NAMES:
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
async def _fresh_runtime() -> AsyncIterator[None]:
    await runtime.close()
    yield
    await runtime.close()


class FakeClock:
    """A clock whose sleep advances time at once and records the wait."""

    def __init__(self, start: float | None = None) -> None:
        # Starts at the real time, so that tokens from the identity emulator are fresh.
        self.now = time.time() if start is None else start
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
