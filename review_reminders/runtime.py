"""Per-process state: the settings, one token provider and one Graph client.

The Functions Python worker runs every async invocation on one event loop, so one
`httpx.AsyncClient` serves the whole process. The client is tied to the loop that created it,
so a new loop (as in tests) gets a new client. `close()` releases the old one.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass

from .auth import ManagedIdentityTokenProvider
from .graph import GraphClient
from .job_store import JobStore
from .ledger import ReminderLedger
from .retry import Clock, SystemClock
from .settings import Settings, load_settings

logger = logging.getLogger(__name__)


@dataclass
class _State:
    loop: asyncio.AbstractEventLoop
    settings: Settings
    tokens: ManagedIdentityTokenProvider
    graph: GraphClient
    ledger: ReminderLedger | None = None
    job_store: JobStore | None = None


_settings: Settings | None = None
_state: _State | None = None
_clock: Clock = SystemClock()


def use_clock(clock: Clock) -> None:
    """Make clients created from now on wait and tell time with `clock` (tests use a fake one)."""
    global _clock
    _clock = clock


def get_settings() -> Settings:
    """Return the app settings, read and validated on the first call.

    Raises ConfigurationError naming every invalid setting, on this and every later call.
    """
    global _settings
    if _settings is None:
        _settings = load_settings()
    return _settings


def get_graph_client() -> GraphClient:
    """Return the process's Graph client, creating it and its token provider on first use."""
    return _get_state().graph


def get_ledger() -> ReminderLedger:
    """Return the process's reminder ledger on the host's storage (AzureWebJobsStorage).

    Raises ConfigurationError when the storage settings are missing or invalid.
    """
    state = _get_state()
    if state.ledger is None:
        state.ledger = ReminderLedger.from_environ(
            os.environ, clock=_clock, table_name=state.settings.ledger_table
        )
    return state.ledger


def get_job_store() -> JobStore:
    """Return the process's store of long jobs, on the same storage as the ledger."""
    state = _get_state()
    if state.job_store is None:
        state.job_store = JobStore.from_environ(
            os.environ, clock=_clock, table_name=state.settings.jobs_table
        )
    return state.job_store


def _get_state() -> _State:
    global _state
    loop = asyncio.get_running_loop()
    if _state is None or _state.loop is not loop:
        settings = get_settings()
        tokens = ManagedIdentityTokenProvider(
            settings.graph_scope, settings.managed_identity_client_id, clock=_clock
        )
        graph = GraphClient(settings, tokens, clock=_clock)
        _state = _State(loop, settings, tokens, graph)
        logger.info(
            "Graph client ready for %s with the %s",
            settings.graph_endpoint,
            tokens.identity,
            extra={"graph_endpoint": settings.graph_endpoint},
        )
    return _state


async def close() -> None:
    """Close the Graph client and the credential, and forget the settings and clock (for tests)."""
    global _settings, _state, _clock
    state, _state, _settings, _clock = _state, None, None, SystemClock()
    if state is not None:
        await state.graph.aclose()
        await state.tokens.close()
        if state.ledger is not None:
            await state.ledger.close()
        if state.job_store is not None:
            await state.job_store.close()
