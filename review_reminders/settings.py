"""App settings, read once from the environment into a validated, frozen object."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import ConfigurationError

GRAPH_ENDPOINT = "GRAPH_ENDPOINT"
GRAPH_MAX_CONCURRENCY = "GRAPH_MAX_CONCURRENCY"
GRAPH_TIMEOUT_SECONDS = "GRAPH_TIMEOUT_SECONDS"
GRAPH_RETRY_BUDGET_SECONDS = "GRAPH_RETRY_BUDGET_SECONDS"
AZURE_CLIENT_ID = "AZURE_CLIENT_ID"
REMINDER_SCHEDULE = "REMINDER_SCHEDULE"
REMINDER_DEFINITION_IDS = "REMINDER_DEFINITION_IDS"
REMINDER_ENDING_WITHIN_DAYS = "REMINDER_ENDING_WITHIN_DAYS"
REMINDER_DRY_RUN = "REMINDER_DRY_RUN"
REMINDER_PENDING_CHECK = "REMINDER_PENDING_CHECK"
REMINDER_COOLDOWN_HOURS = "REMINDER_COOLDOWN_HOURS"
REMINDER_TABLE_PREFIX = "REMINDER_TABLE_PREFIX"
REMINDER_SYNC_BUDGET_SECONDS = "REMINDER_SYNC_BUDGET_SECONDS"

# Every app setting that the code or a binding expression reads. The infra tests check that the
# Bicep sets each one, so a setting added here and forgotten in infra/ fails the build.
APP_SETTING_NAMES = (
    GRAPH_ENDPOINT,
    GRAPH_MAX_CONCURRENCY,
    GRAPH_TIMEOUT_SECONDS,
    GRAPH_RETRY_BUDGET_SECONDS,
    AZURE_CLIENT_ID,
    REMINDER_SCHEDULE,
    REMINDER_DEFINITION_IDS,
    REMINDER_ENDING_WITHIN_DAYS,
    REMINDER_DRY_RUN,
    REMINDER_PENDING_CHECK,
    REMINDER_COOLDOWN_HOURS,
    REMINDER_TABLE_PREFIX,
    REMINDER_SYNC_BUDGET_SECONDS,
)

DEFAULT_GRAPH_ENDPOINT = "https://graph.microsoft.com"
DEFAULT_GRAPH_MAX_CONCURRENCY = 4
DEFAULT_GRAPH_TIMEOUT_S = 30.0
DEFAULT_GRAPH_RETRY_BUDGET_S = 45.0

MAX_ENDING_WITHIN_DAYS = 365
DEFAULT_REMINDER_COOLDOWN_HOURS = 20.0
MAX_REMINDER_COOLDOWN_HOURS = 720.0
DEFAULT_REMINDER_TABLE_PREFIX = "reminder"
# Power Automate gives up on an HTTP action after 120 s, and the Functions front end cuts a
# response at 230 s, so a synchronous response must come well before either.
DEFAULT_REMINDER_SYNC_BUDGET_S = 60.0
MIN_REMINDER_SYNC_BUDGET_S = 5.0
MAX_REMINDER_SYNC_BUDGET_S = 110.0
# Table names have 3 to 63 letters and digits and start with a letter. The longest suffix is
# "ledger", so the prefix keeps 57 characters at most.
_TABLE_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9]{1,56}", re.ASCII)
MAX_GRAPH_CONCURRENCY = 32
MAX_GRAPH_TIMEOUT_S = 60.0
# Power Automate gives up on an HTTP action after 120 s, so one request's retries must end sooner.
MAX_GRAPH_RETRY_BUDGET_S = 100.0

_GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.ASCII)
# ASCII digits only: int() and float() also accept other scripts' digits, "inf" and "nan".
_WHOLE_NUMBER = re.compile(r"[0-9]+", re.ASCII)
_DECIMAL_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?", re.ASCII)


def is_guid(value: str) -> bool:
    """Tell whether `value` is exactly one GUID in 8-4-4-4-12 hex form, in either case."""
    return value.isascii() and _GUID.fullmatch(value.lower()) is not None


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_graph_endpoint(raw: str, problems: list[str]) -> str:
    value = raw.strip().rstrip("/")
    parts = urlsplit(value)
    host = parts.hostname or ""
    try:
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number in range
    except ValueError:
        host = ""
    if "?" in value or "#" in value:
        problems.append(
            f"{GRAPH_ENDPOINT} must be the service root with no query or fragment, got {raw!r}"
        )
    elif parts.scheme not in ("https", "http") or not host:
        problems.append(f"{GRAPH_ENDPOINT} must be an absolute https URL, got {raw!r}")
    elif parts.scheme == "http" and not _is_loopback(host):
        problems.append(
            f"{GRAPH_ENDPOINT} must use https, got {raw!r} (http is allowed for loopback only)"
        )
    elif parts.path or parts.query or parts.fragment or parts.username or parts.password:
        problems.append(
            f"{GRAPH_ENDPOINT} must be the service root with no path, for example "
            f"{DEFAULT_GRAPH_ENDPOINT}, got {raw!r}"
        )
    return value


def _parse_number(
    environ: Mapping[str, str],
    name: str,
    default: float,
    *,
    minimum: float,
    maximum: float,
    integer: bool,
    problems: list[str],
) -> float:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    kind = "a whole number" if integer else "a number"
    pattern = _WHOLE_NUMBER if integer else _DECIMAL_NUMBER
    if pattern.fullmatch(raw) is None or not minimum <= float(raw) <= maximum:
        problems.append(f"{name} must be {kind} from {minimum:g} to {maximum:g}, got {raw!r}")
        return default
    return float(raw)


def _parse_bool(environ: Mapping[str, str], name: str, default: bool, problems: list[str]) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    problems.append(f"{name} must be true or false, got {environ[name]!r}")
    return default


def _parse_definition_ids(raw: str, problems: list[str]) -> tuple[str, ...]:
    ids: list[str] = []
    for item in raw.split(","):
        candidate = item.strip()
        if not candidate:
            continue
        if not is_guid(candidate):
            problems.append(
                f"{REMINDER_DEFINITION_IDS} contains {candidate!r}, which is not a GUID"
            )
            continue
        if candidate.lower() not in ids:
            ids.append(candidate.lower())
    return tuple(ids)


@dataclass(frozen=True)
class Settings:
    """The app settings that the jobs and the Graph client use, validated."""

    graph_endpoint: str = DEFAULT_GRAPH_ENDPOINT
    managed_identity_client_id: str | None = None
    definition_ids: tuple[str, ...] = ()
    max_concurrency: int = DEFAULT_GRAPH_MAX_CONCURRENCY
    timeout_s: float = DEFAULT_GRAPH_TIMEOUT_S
    retry_budget_s: float = DEFAULT_GRAPH_RETRY_BUDGET_S
    # Timer only: instances must end within this many days; None covers every end date.
    ending_within_days: int | None = None
    # Timer only: report what would be sent, and send nothing.
    dry_run: bool = False
    # Both triggers: skip instances in which every reviewer has decided.
    pending_check: bool = True
    # An instance reminded within this many seconds is skipped unless forced; 0: no cooldown.
    cooldown_s: float = DEFAULT_REMINDER_COOLDOWN_HOURS * 3600
    # Prefix of the Table storage tables: {prefix}ledger and {prefix}jobs.
    table_prefix: str = DEFAULT_REMINDER_TABLE_PREFIX
    # A request expected to take longer gets 202 and runs from a queue.
    sync_budget_s: float = DEFAULT_REMINDER_SYNC_BUDGET_S

    @property
    def ledger_table(self) -> str:
        return f"{self.table_prefix}ledger"

    @property
    def jobs_table(self) -> str:
        return f"{self.table_prefix}jobs"

    @property
    def graph_scope(self) -> str:
        """The token scope for this Graph endpoint, which differs per national cloud."""
        return f"{self.graph_endpoint}/.default"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read and validate the app settings, raising one ConfigurationError that names every problem.

    `REMINDER_SCHEDULE` is not read here: the Functions host resolves it for the timer binding.
    """
    env = os.environ if environ is None else environ
    problems: list[str] = []

    graph_endpoint = _parse_graph_endpoint(
        env.get(GRAPH_ENDPOINT, "") or DEFAULT_GRAPH_ENDPOINT, problems
    )
    client_id = env.get(AZURE_CLIENT_ID, "").strip() or None
    if client_id is not None and not is_guid(client_id):
        problems.append(
            f"{AZURE_CLIENT_ID} must be the client id (a GUID) of a user-assigned identity"
        )
    definition_ids = _parse_definition_ids(env.get(REMINDER_DEFINITION_IDS, ""), problems)
    max_concurrency = _parse_number(
        env,
        GRAPH_MAX_CONCURRENCY,
        DEFAULT_GRAPH_MAX_CONCURRENCY,
        minimum=1,
        maximum=MAX_GRAPH_CONCURRENCY,
        integer=True,
        problems=problems,
    )
    timeout_s = _parse_number(
        env,
        GRAPH_TIMEOUT_SECONDS,
        DEFAULT_GRAPH_TIMEOUT_S,
        minimum=1,
        maximum=MAX_GRAPH_TIMEOUT_S,
        integer=False,
        problems=problems,
    )
    retry_budget_s = _parse_number(
        env,
        GRAPH_RETRY_BUDGET_SECONDS,
        DEFAULT_GRAPH_RETRY_BUDGET_S,
        minimum=0,
        maximum=MAX_GRAPH_RETRY_BUDGET_S,
        integer=False,
        problems=problems,
    )

    ending_within_days = None
    if env.get(REMINDER_ENDING_WITHIN_DAYS, "").strip():
        ending_within_days = int(
            _parse_number(
                env,
                REMINDER_ENDING_WITHIN_DAYS,
                0,
                minimum=0,
                maximum=MAX_ENDING_WITHIN_DAYS,
                integer=True,
                problems=problems,
            )
        )
    dry_run = _parse_bool(env, REMINDER_DRY_RUN, False, problems)
    pending_check = _parse_bool(env, REMINDER_PENDING_CHECK, True, problems)
    cooldown_hours = _parse_number(
        env,
        REMINDER_COOLDOWN_HOURS,
        DEFAULT_REMINDER_COOLDOWN_HOURS,
        minimum=0,
        maximum=MAX_REMINDER_COOLDOWN_HOURS,
        integer=False,
        problems=problems,
    )
    sync_budget_s = _parse_number(
        env,
        REMINDER_SYNC_BUDGET_SECONDS,
        DEFAULT_REMINDER_SYNC_BUDGET_S,
        minimum=MIN_REMINDER_SYNC_BUDGET_S,
        maximum=MAX_REMINDER_SYNC_BUDGET_S,
        integer=False,
        problems=problems,
    )
    table_prefix = env.get(REMINDER_TABLE_PREFIX, "").strip() or DEFAULT_REMINDER_TABLE_PREFIX
    if _TABLE_PREFIX.fullmatch(table_prefix) is None:
        problems.append(
            f"{REMINDER_TABLE_PREFIX} must be 2 to 57 letters and digits starting with a letter, "
            f"got {table_prefix!r}"
        )

    if problems:
        raise ConfigurationError(problems)
    return Settings(
        graph_endpoint=graph_endpoint,
        managed_identity_client_id=client_id.lower() if client_id else None,
        definition_ids=definition_ids,
        max_concurrency=int(max_concurrency),
        timeout_s=timeout_s,
        retry_budget_s=retry_budget_s,
        ending_within_days=ending_within_days,
        dry_run=dry_run,
        pending_check=pending_check,
        cooldown_s=cooldown_hours * 3600,
        table_prefix=table_prefix,
        sync_budget_s=sync_budget_s,
    )
