"""Azure Table storage shared by the reminder ledger and the job store.

Both use the Functions host's own storage connection, `AzureWebJobsStorage`:

- a connection string (including `UseDevelopmentStorage=true` for Azurite), or
- an identity-based connection: `AzureWebJobsStorage__tableServiceUri` (or
  `AzureWebJobsStorage__accountName`), with the optional `AzureWebJobsStorage__credential`
  (`managedidentity`) and `AzureWebJobsStorage__clientId` of a user-assigned identity.

The stores use azure-data-tables' synchronous client in worker threads (`asyncio.to_thread`).
Its asyncio client needs aiohttp, a second HTTP stack next to the httpx that talks to Graph.
Every storage failure leaves this module as LedgerUnavailableError, so a caller that cannot
record what it does sends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self, TypeVar
from urllib.parse import urlsplit

from .errors import ConfigurationError, LedgerUnavailableError
from .retry import Clock, SystemClock

if TYPE_CHECKING:
    from azure.data.tables import TableClient

logger = logging.getLogger(__name__)

STORAGE_CONNECTION = "AzureWebJobsStorage"
STORAGE_TABLE_SERVICE_URI = "AzureWebJobsStorage__tableServiceUri"
STORAGE_ACCOUNT_NAME = "AzureWebJobsStorage__accountName"
STORAGE_CREDENTIAL = "AzureWebJobsStorage__credential"
STORAGE_CLIENT_ID = "AzureWebJobsStorage__clientId"

# Characters that Table storage does not allow in a PartitionKey or RowKey.
_FORBIDDEN_KEY_CHARACTERS = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
_MAX_KEY_CHARACTERS = 512  # a key may be 1 KiB of UTF-16
# Storage error texts can contain request URLs, and with a SAS connection string those URLs
# carry the signature. Everything this module logs or raises passes through this pattern.
_SAS_SIGNATURE = re.compile(r"(sig=)[^&\s'\"]+", re.IGNORECASE)

_T = TypeVar("_T")


@dataclass(frozen=True)
class StorageOptions:
    """Timeouts and retries of the storage client.

    They are short on purpose: when storage is down, a run should fail within seconds and send
    nothing, not wait for the SDK's defaults of 300 s timeouts and 10 retries. The retry
    policy of azure-core sleeps in real time, so tests that stop the emulator use
    `retry_total=0`.
    """

    connection_timeout_s: float = 3.0
    read_timeout_s: float = 5.0
    retry_total: int = 2
    retry_backoff_factor_s: float = 0.5
    retry_backoff_max_s: float = 2.0

    def client_kwargs(self) -> dict[str, Any]:
        """Return the client keywords that set the transport timeouts and the retry policy."""
        return {
            "connection_timeout": self.connection_timeout_s,
            "read_timeout": self.read_timeout_s,
            "retry_total": self.retry_total,
            "retry_backoff_factor": self.retry_backoff_factor_s,
            "retry_backoff_max": self.retry_backoff_max_s,
        }


@dataclass(frozen=True)
class StorageConnection:
    """Location of Table storage: a connection string, or an https endpoint and an identity."""

    connection_string: str | None = field(default=None, repr=False)
    table_endpoint: str | None = None
    client_id: str | None = None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> StorageConnection:
        """Read the Functions host's storage settings. A connection string wins over the others.

        Raises ConfigurationError naming the settings when neither form is usable.
        """
        connection_string = environ.get(STORAGE_CONNECTION, "").strip()
        if connection_string:
            return cls(connection_string=connection_string)

        problems: list[str] = []
        endpoint = _identity_endpoint(environ, problems)
        credential = environ.get(STORAGE_CREDENTIAL, "").strip()
        if credential and credential.lower() != "managedidentity":
            problems.append(
                f"{STORAGE_CREDENTIAL} must be 'managedidentity' or unset, got {credential!r}"
            )
        if problems:
            raise ConfigurationError(problems)
        client_id = environ.get(STORAGE_CLIENT_ID, "").strip() or None
        return cls(table_endpoint=endpoint, client_id=client_id)

    def describe(self) -> str:
        """Name the storage endpoint for logs and errors, without any key or signature."""
        if self.table_endpoint is not None:
            return self.table_endpoint
        parts: dict[str, str] = {}
        for part in (self.connection_string or "").split(";"):
            name, _, value = part.partition("=")
            parts[name.strip().lower()] = value.strip()
        if "tableendpoint" in parts:
            return _SAS_SIGNATURE.sub(r"\1REDACTED", parts["tableendpoint"])
        if "usedevelopmentstorage" in parts:
            return "the local storage emulator (UseDevelopmentStorage=true)"
        if "accountname" in parts:
            return f"storage account {parts['accountname']}"
        return f"the {STORAGE_CONNECTION} connection"

    def create_table_client(self, table_name: str, options: StorageOptions) -> TableClient:
        """Build a client for one table. Builds only, without any network request."""
        # Imported here: importing the function app must stay cheap.
        from azure.data.tables import TableClient

        kwargs = options.client_kwargs()
        if self.connection_string is not None:
            try:
                return TableClient.from_connection_string(
                    self.connection_string, table_name, **kwargs
                )
            except ValueError as exc:
                # azure-core's and the SDK's messages name a missing or duplicate part, not values.
                raise ConfigurationError(
                    [f"{STORAGE_CONNECTION} is not a valid storage connection string: {exc}"]
                ) from None

        if self.table_endpoint is None:
            raise ConfigurationError([f"{STORAGE_CONNECTION} is not set"])
        from azure.identity import ManagedIdentityCredential

        credential = ManagedIdentityCredential(client_id=self.client_id)
        # NOTE: the token audience is the SDK's default, which is the public cloud's storage
        # audience. A national cloud may need the SDK's `audience` argument too (untested).
        return TableClient(self.table_endpoint, table_name, credential=credential, **kwargs)


def _identity_endpoint(environ: Mapping[str, str], problems: list[str]) -> str | None:
    uri = environ.get(STORAGE_TABLE_SERVICE_URI, "").strip().rstrip("/")
    account = environ.get(STORAGE_ACCOUNT_NAME, "").strip()
    if uri:
        parts = urlsplit(uri)
        if parts.scheme != "https" or not parts.hostname:
            problems.append(
                f"{STORAGE_TABLE_SERVICE_URI} must be an https URL such as "
                f"https://<account>.table.core.windows.net, got {uri!r}"
            )
        return uri
    if account:
        # NOTE: accountName alone implies the public cloud. National clouds set tableServiceUri.
        return f"https://{account}.table.core.windows.net"
    problems.append(
        f"{STORAGE_CONNECTION} is not set: set it to a connection string, or set "
        f"{STORAGE_TABLE_SERVICE_URI} (or {STORAGE_ACCOUNT_NAME}) for an identity-based "
        "connection"
    )
    return None


def check_key(name: str, value: str) -> None:
    """Raise ValueError when `value` cannot be part of a PartitionKey or RowKey."""
    if not value or len(value) > _MAX_KEY_CHARACTERS or _FORBIDDEN_KEY_CHARACTERS.search(value):
        raise ValueError(
            f"{name} {value[:80]!r} cannot be a Table storage key: it must be 1 to "
            f"{_MAX_KEY_CHARACTERS} characters without '/', '\\', '#', '?' or control characters"
        )


def format_time(timestamp: float) -> str:
    """Format a Unix time as ISO 8601 UTC with microseconds, so strings sort like times."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> float:
    """Parse a time written by format_time back to a Unix time."""
    return datetime.fromisoformat(text).timestamp()


def describe_storage_error(exc: BaseException) -> str:
    """Describe a storage failure in one line, with any SAS signature redacted."""
    from azure.core.exceptions import HttpResponseError

    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        # azure-data-tables adds the service's error code, such as TableNotFound, to its errors.
        error_code = getattr(exc, "error_code", None)
        code = f" {error_code}" if error_code else ""
        text = f"HTTP {exc.status_code}{code}"
    else:
        lines = str(exc).strip().splitlines()
        first = lines[0] if lines else ""
        text = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        if len(text) > 300:
            text = text[:300] + "..."
    return _SAS_SIGNATURE.sub(r"\1REDACTED", text)


class TableStore:
    """One table: its client, created on first use, and the translation of storage errors.

    The table is created when the first operation runs, and a 409 from a concurrent creator
    counts as success. Operations run in worker threads. They handle the responses they expect
    (404 on a read, 409 on an insert, 412 on a conditional update) themselves. Any other
    azure-core error becomes LedgerUnavailableError.
    """

    def __init__(
        self,
        connection: StorageConnection,
        table_name: str,
        options: StorageOptions | None = None,
    ) -> None:
        self.connection = connection
        self.table_name = table_name
        self.options = options or StorageOptions()
        self._client: TableClient | None = None
        self._table_ready = False
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"TableStore({self.table_name!r} at {self.connection.describe()})"

    async def run(self, operation: str, action: Callable[[TableClient], _T]) -> _T:
        """Run `action` with the table's client in a worker thread.

        `operation` names the step in errors and logs, for example "claim instance X".
        Raises LedgerUnavailableError, with the storage error as its cause, on any failure.
        """
        from azure.core.exceptions import AzureError

        try:
            client = await self._ready_client(operation)
            return await asyncio.to_thread(action, client)
        except AzureError as exc:
            raise self._unavailable(operation, exc) from exc

    async def close(self) -> None:
        """Close the client's HTTP session. The next operation opens a new one."""
        client, self._client = self._client, None
        self._table_ready = False
        if client is not None:
            await asyncio.to_thread(client.close)

    async def _ready_client(self, operation: str) -> TableClient:
        client = self._client
        if client is not None and self._table_ready:
            return client
        async with self._lock:
            if self._client is None:
                self._client = self.connection.create_table_client(self.table_name, self.options)
            if not self._table_ready:
                await asyncio.to_thread(_create_table_if_missing, self._client)
                self._table_ready = True
                logger.info("Table %s is ready at %s", self.table_name, self.connection.describe())
            return self._client

    def _unavailable(self, operation: str, exc: BaseException) -> LedgerUnavailableError:
        cause = describe_storage_error(exc)
        logger.warning(
            "Table storage %s failed for table %s at %s: %s",
            operation,
            self.table_name,
            self.connection.describe(),
            cause,
            extra={"table": self.table_name, "operation": operation},
        )
        return LedgerUnavailableError(operation, cause)


def _create_table_if_missing(client: TableClient) -> None:
    from azure.core.exceptions import ResourceExistsError

    # 409: the table exists, created earlier or by a concurrent run.
    with contextlib.suppress(ResourceExistsError):
        client.create_table()


class TableBacked:
    """Base of the classes that keep their rows in one table of the host's storage account.

    Subclasses set DEFAULT_TABLE and use `self._store` and `self._clock`.
    """

    DEFAULT_TABLE = ""

    def __init__(
        self,
        connection: StorageConnection,
        *,
        clock: Clock | None = None,
        options: StorageOptions | None = None,
        table_name: str | None = None,
    ) -> None:
        self._store = TableStore(connection, table_name or self.DEFAULT_TABLE, options)
        self._clock = clock or SystemClock()

    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str],
        *,
        clock: Clock | None = None,
        options: StorageOptions | None = None,
        table_name: str | None = None,
    ) -> Self:
        """Build it on the Functions host's storage settings, without connecting yet.

        Raises ConfigurationError naming the settings when they are missing or invalid.
        """
        connection = StorageConnection.from_environ(environ)
        return cls(connection, clock=clock, options=options, table_name=table_name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._store!r})"

    async def close(self) -> None:
        """Close the storage client's HTTP session."""
        await self._store.close()
