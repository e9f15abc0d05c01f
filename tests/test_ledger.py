from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from azure.core.exceptions import AzureError
from azure.data.tables import TableClient

from review_reminders.errors import ConfigurationError, LedgerUnavailableError
from review_reminders.ledger import (
    CLAIM_LEASE_S,
    KIND_ATTEMPT,
    KIND_STATE,
    LEDGER_TABLE,
    OUTCOME_ABANDONED,
    SKIP_CLAIMED,
    SKIP_COOLDOWN,
    Caller,
    Claim,
    LedgerSkip,
    ReminderLedger,
)
from review_reminders.storage import (
    STORAGE_ACCOUNT_NAME,
    STORAGE_CLIENT_ID,
    STORAGE_CONNECTION,
    STORAGE_CREDENTIAL,
    STORAGE_TABLE_SERVICE_URI,
    StorageConnection,
    StorageOptions,
    describe_storage_error,
)
from tests.azurite import ACCOUNT_KEY, Azurite
from tests.conftest import FakeClock

HOUR_S = 3600.0
COOLDOWN_S = 20 * HOUR_S
CALLER = Caller("http", invocation_id="inv-1", workflow_run_id="run-1", client_tracking_id="trk-1")
# Zero retries: azure-core's retry policy sleeps in real time.
NO_RETRIES = StorageOptions(retry_total=0, connection_timeout_s=2.0, read_timeout_s=2.0)


@pytest.fixture
async def ledger(azurite: Azurite, clock: FakeClock) -> AsyncIterator[ReminderLedger]:
    environ = {STORAGE_CONNECTION: azurite.connection_string}
    ledger = ReminderLedger.from_environ(environ, clock=clock, options=NO_RETRIES)
    yield ledger
    await ledger.close()


@pytest.fixture
def ids() -> tuple[str, str]:
    """Return a fresh definition and instance id, so tests sharing one table never collide."""
    return str(uuid.uuid4()), str(uuid.uuid4())


def rows(azurite: Azurite, definition_id: str) -> list[dict[str, Any]]:
    """Read every ledger row of a definition straight from the table, sorted by RowKey."""
    with TableClient.from_connection_string(azurite.connection_string, LEDGER_TABLE) as table:
        found = table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": definition_id}, results_per_page=1000
        )
        return sorted((dict(row) for row in found), key=lambda row: row["RowKey"])


def attempts(azurite: Azurite, definition_id: str) -> list[dict[str, Any]]:
    return [row for row in rows(azurite, definition_id) if row["Kind"] == KIND_ATTEMPT]


def state_row(azurite: Azurite, ids: tuple[str, str]) -> dict[str, Any]:
    with TableClient.from_connection_string(azurite.connection_string, LEDGER_TABLE) as table:
        return dict(table.get_entity(*ids))


async def claim(
    ledger: ReminderLedger,
    ids: tuple[str, str],
    *,
    cooldown_s: float = COOLDOWN_S,
    force: bool = False,
    caller: Caller = CALLER,
) -> Claim | LedgerSkip:
    return await ledger.claim(*ids, cooldown_s=cooldown_s, force=force, caller=caller)


async def claimed(ledger: ReminderLedger, ids: tuple[str, str], **kwargs: Any) -> Claim:
    result = await claim(ledger, ids, **kwargs)
    assert isinstance(result, Claim), result
    return result


async def test_claim_new_instance(ledger: ReminderLedger, ids: tuple[str, str]) -> None:
    result = await claim(ledger, ids)

    assert isinstance(result, Claim)
    assert (result.definition_id, result.instance_id) == ids


async def test_concurrent_new_claims_one_wins(ledger: ReminderLedger, ids: tuple[str, str]) -> None:
    results = await asyncio.gather(claim(ledger, ids), claim(ledger, ids))

    assert sum(isinstance(result, Claim) for result in results) == 1
    assert LedgerSkip(SKIP_CLAIMED) in results


async def test_concurrent_reclaims_one_wins(ledger: ReminderLedger, ids: tuple[str, str]) -> None:
    # The row exists now, so the race is decided by the ETag, not by insert-if-absent.
    first = await claimed(ledger, ids)
    await ledger.record(first, outcome="failed", request_id="req-1", reason="Graph returned 429")

    results = await asyncio.gather(*(claim(ledger, ids) for _ in range(4)))

    assert sum(isinstance(result, Claim) for result in results) == 1
    assert sum(result == LedgerSkip(SKIP_CLAIMED) for result in results) == 3


async def test_live_claim_blocks_force(ledger: ReminderLedger, ids: tuple[str, str]) -> None:
    await claimed(ledger, ids)

    result = await claim(ledger, ids, force=True)

    assert result == LedgerSkip(SKIP_CLAIMED)


async def test_cooldown_skips_recent_send(
    ledger: ReminderLedger, ids: tuple[str, str], clock: FakeClock, azurite: Azurite
) -> None:
    first = await claimed(ledger, ids)
    await ledger.record(first, outcome="sent", request_id="req-1")
    clock.now += COOLDOWN_S - 60

    result = await claim(ledger, ids)

    assert isinstance(result, LedgerSkip)
    assert result.reason == SKIP_COOLDOWN
    assert result.last_sent_at == state_row(azurite, ids)["LastSentAt"]


async def test_cooldown_ends_after_window(
    ledger: ReminderLedger, ids: tuple[str, str], clock: FakeClock
) -> None:
    first = await claimed(ledger, ids)
    await ledger.record(first, outcome="sent", request_id="req-1")
    clock.now += COOLDOWN_S + 1

    result = await claim(ledger, ids)

    assert isinstance(result, Claim)


async def test_force_overrides_cooldown(ledger: ReminderLedger, ids: tuple[str, str]) -> None:
    first = await claimed(ledger, ids)
    await ledger.record(first, outcome="sent", request_id="req-1")

    result = await claim(ledger, ids, force=True)

    assert isinstance(result, Claim)


async def test_zero_cooldown_allows_resend(ledger: ReminderLedger, ids: tuple[str, str]) -> None:
    first = await claimed(ledger, ids)
    await ledger.record(first, outcome="sent", request_id="req-1")

    second = await claim(ledger, ids, cooldown_s=0)
    overlapping = await claim(ledger, ids, cooldown_s=0)

    assert isinstance(second, Claim)
    assert isinstance(overlapping, LedgerSkip)
    assert overlapping.reason == SKIP_CLAIMED


async def test_unknown_counts_as_sent(ledger: ReminderLedger, ids: tuple[str, str]) -> None:
    first = await claimed(ledger, ids)
    await ledger.record(first, outcome="unknown", request_id=None, reason="Graph returned 504")

    result = await claim(ledger, ids)

    assert isinstance(result, LedgerSkip)
    assert result.reason == SKIP_COOLDOWN


async def test_failed_releases_instance(ledger: ReminderLedger, ids: tuple[str, str]) -> None:
    first = await claimed(ledger, ids)
    await ledger.record(first, outcome="failed", request_id="req-1", reason="Graph returned 403")

    result = await claim(ledger, ids)

    assert isinstance(result, Claim)


async def test_failed_keeps_earlier_cooldown(ledger: ReminderLedger, ids: tuple[str, str]) -> None:
    first = await claimed(ledger, ids)
    await ledger.record(first, outcome="sent", request_id="req-1")
    forced = await claimed(ledger, ids, force=True)
    await ledger.record(forced, outcome="failed", request_id="req-2", reason="throttled")

    result = await claim(ledger, ids)

    assert isinstance(result, LedgerSkip)
    assert result.reason == SKIP_COOLDOWN


async def test_claim_within_lease_kept(
    ledger: ReminderLedger, ids: tuple[str, str], clock: FakeClock
) -> None:
    await claimed(ledger, ids)
    clock.now += CLAIM_LEASE_S - 1

    result = await claim(ledger, ids)

    assert result == LedgerSkip(SKIP_CLAIMED)


async def test_abandoned_claim_taken_over(
    ledger: ReminderLedger, ids: tuple[str, str], clock: FakeClock, azurite: Azurite
) -> None:
    abandoned = await claimed(ledger, ids, caller=Caller("timer", invocation_id="killed"))
    clock.now += CLAIM_LEASE_S + 1

    result = await claim(ledger, ids)

    assert isinstance(result, Claim)
    assert result.claim_id != abandoned.claim_id
    audit = attempts(azurite, ids[0])
    assert [row["Outcome"] for row in audit] == [OUTCOME_ABANDONED]
    assert audit[0]["InvocationId"] == "killed"


async def test_late_record_keeps_new_claim(
    ledger: ReminderLedger, ids: tuple[str, str], clock: FakeClock, azurite: Azurite
) -> None:
    slow = await claimed(ledger, ids)
    clock.now += CLAIM_LEASE_S + 1
    newer = await claimed(ledger, ids)

    await ledger.record(slow, outcome="sent", request_id="req-slow")

    state = state_row(azurite, ids)
    assert state["ClaimId"] == newer.claim_id
    assert state["Status"] == "claimed"
    assert "req-slow" in [row.get("RequestId") for row in attempts(azurite, ids[0])]


async def test_audit_rows_kept_across_sends(
    ledger: ReminderLedger, ids: tuple[str, str], clock: FakeClock, azurite: Azurite
) -> None:
    first = await claimed(ledger, ids)
    await ledger.record(first, outcome="sent", request_id="req-1")
    clock.now += COOLDOWN_S + 1
    second = await claimed(ledger, ids)
    await ledger.record(second, outcome="sent", request_id="req-2")

    audit = attempts(azurite, ids[0])

    assert [row["RequestId"] for row in audit] == ["req-1", "req-2"]
    assert [row["Outcome"] for row in audit] == ["sent", "sent"]
    assert state_row(azurite, ids)["LastRequestId"] == "req-2"


async def test_record_stores_caller_ids(
    ledger: ReminderLedger, ids: tuple[str, str], azurite: Azurite
) -> None:
    first = await claimed(ledger, ids)
    await ledger.record(first, outcome="failed", request_id="req-1", reason="Graph returned 429")

    state = state_row(azurite, ids)
    (audit,) = attempts(azurite, ids[0])

    for row in (state, audit):
        assert row["Trigger"] == "http"
        assert row["InvocationId"] == "inv-1"
        assert row["WorkflowRunId"] == "run-1"
        assert row["ClientTrackingId"] == "trk-1"
    assert state["Kind"] == KIND_STATE
    assert audit["Reason"] == "Graph returned 429"
    assert audit["ClaimId"] == first.claim_id


async def test_record_omits_missing_caller_ids(
    ledger: ReminderLedger, ids: tuple[str, str], azurite: Azurite
) -> None:
    first = await claimed(ledger, ids, caller=Caller("timer", invocation_id="inv-2"))
    await ledger.record(first, outcome="sent", request_id="req-1")

    state = state_row(azurite, ids)

    assert "WorkflowRunId" not in state
    assert "LastReason" not in state


async def test_record_rejects_unknown_outcome(ledger: ReminderLedger, ids: tuple[str, str]) -> None:
    first = await claimed(ledger, ids)

    with pytest.raises(ValueError, match="outcome"):
        await ledger.record(first, outcome="skipped", request_id=None)


async def test_check_writes_nothing(
    ledger: ReminderLedger, ids: tuple[str, str], azurite: Azurite
) -> None:
    result = await ledger.check(*ids, cooldown_s=COOLDOWN_S)

    assert result is None
    assert rows(azurite, ids[0]) == []


async def test_check_reports_cooldown(ledger: ReminderLedger, ids: tuple[str, str]) -> None:
    first = await claimed(ledger, ids)
    await ledger.record(first, outcome="sent", request_id="req-1")

    result = await ledger.check(*ids, cooldown_s=COOLDOWN_S)

    assert isinstance(result, LedgerSkip)
    assert result.reason == SKIP_COOLDOWN


@pytest.mark.parametrize("instance_id", ["a/b", "a|b", "a#b", "", "a\nb"])
async def test_claim_rejects_bad_key(ledger: ReminderLedger, instance_id: str) -> None:
    with pytest.raises(ValueError, match="instance id"):
        await ledger.claim("d", instance_id, cooldown_s=0, force=False, caller=CALLER)


async def test_claim_rejects_negative_cooldown(
    ledger: ReminderLedger, ids: tuple[str, str]
) -> None:
    with pytest.raises(ValueError, match="cooldown_s"):
        await claim(ledger, ids, cooldown_s=-1)


async def test_stopped_storage_fails_fast(
    ledger: ReminderLedger, ids: tuple[str, str], azurite: Azurite
) -> None:
    first = await claimed(ledger, ids)
    with azurite.stopped():
        started = time.monotonic()
        with pytest.raises(LedgerUnavailableError) as claim_error:
            await claim(ledger, (ids[0], str(uuid.uuid4())))
        with pytest.raises(LedgerUnavailableError) as record_error:
            await ledger.record(first, outcome="sent", request_id="req-1")
        elapsed = time.monotonic() - started

    assert elapsed < 5.0
    assert isinstance(claim_error.value.__cause__, AzureError)
    assert isinstance(record_error.value.__cause__, AzureError)
    assert ACCOUNT_KEY not in str(claim_error.value)


async def test_restarted_storage_keeps_claims(
    ledger: ReminderLedger, ids: tuple[str, str], azurite: Azurite
) -> None:
    first = await claimed(ledger, ids)
    await ledger.record(first, outcome="sent", request_id="req-1")
    with azurite.stopped():
        pass

    result = await claim(ledger, ids)

    assert isinstance(result, LedgerSkip)
    assert result.reason == SKIP_COOLDOWN


async def test_wrong_key_is_unavailable(azurite: Azurite, ids: tuple[str, str]) -> None:
    wrong = azurite.connection_string.replace(ACCOUNT_KEY, "d3Jvbmcta2V5LXdyb25nLWtleQ==")
    ledger = ReminderLedger.from_environ({STORAGE_CONNECTION: wrong}, options=NO_RETRIES)
    try:
        with pytest.raises(LedgerUnavailableError, match="HTTP 403"):
            await claim(ledger, ids)
    finally:
        await ledger.close()


def test_missing_settings_name_both() -> None:
    with pytest.raises(ConfigurationError) as error:
        ReminderLedger.from_environ({})

    assert STORAGE_CONNECTION in str(error.value)
    assert STORAGE_TABLE_SERVICE_URI in str(error.value)


def test_bad_credential_setting_rejected() -> None:
    environ = {
        STORAGE_TABLE_SERVICE_URI: "https://acct.table.core.windows.net",
        STORAGE_CREDENTIAL: "clientsecret",
    }

    with pytest.raises(ConfigurationError, match=STORAGE_CREDENTIAL):
        ReminderLedger.from_environ(environ)


def test_http_service_uri_rejected() -> None:
    environ = {STORAGE_TABLE_SERVICE_URI: "http://acct.table.core.windows.net"}

    with pytest.raises(ConfigurationError, match="https"):
        ReminderLedger.from_environ(environ)


def test_invalid_connection_string_rejected() -> None:
    connection = StorageConnection.from_environ({STORAGE_CONNECTION: "not a connection string"})

    with pytest.raises(ConfigurationError, match=STORAGE_CONNECTION):
        connection.create_table_client(LEDGER_TABLE, StorageOptions())


def test_identity_settings_build_client(monkeypatch: pytest.MonkeyPatch) -> None:
    import azure.identity

    built: list[str | None] = []

    class RecordingCredential:
        def __init__(self, *, client_id: str | None = None) -> None:
            built.append(client_id)

        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            raise AssertionError("no token may be requested while building a client")

    monkeypatch.setattr(azure.identity, "ManagedIdentityCredential", RecordingCredential)
    environ = {
        STORAGE_TABLE_SERVICE_URI: "https://acct.table.core.windows.net/",
        STORAGE_CREDENTIAL: "managedidentity",
        STORAGE_CLIENT_ID: "44444444-4444-4444-4444-444444444444",
    }

    connection = StorageConnection.from_environ(environ)
    client = connection.create_table_client(LEDGER_TABLE, StorageOptions())

    assert client.url == "https://acct.table.core.windows.net"
    assert client.table_name == LEDGER_TABLE
    assert built == ["44444444-4444-4444-4444-444444444444"]
    assert isinstance(client.credential, RecordingCredential)


def test_account_name_builds_endpoint() -> None:
    connection = StorageConnection.from_environ({STORAGE_ACCOUNT_NAME: "acct"})

    assert connection.table_endpoint == "https://acct.table.core.windows.net"
    assert connection.client_id is None


def test_connection_string_wins() -> None:
    environ = {
        STORAGE_CONNECTION: "UseDevelopmentStorage=true",
        STORAGE_TABLE_SERVICE_URI: "https://acct.table.core.windows.net",
    }

    connection = StorageConnection.from_environ(environ)
    client = connection.create_table_client(LEDGER_TABLE, StorageOptions())

    assert client.url == "http://127.0.0.1:10002/devstoreaccount1"


def test_connection_repr_hides_key(azurite: Azurite) -> None:
    connection = StorageConnection.from_environ({STORAGE_CONNECTION: azurite.connection_string})

    assert ACCOUNT_KEY not in repr(connection)
    assert ACCOUNT_KEY not in connection.describe()


def test_error_description_redacts_signature() -> None:
    error = AzureError("GET http://127.0.0.1/t?sv=2019&sig=c2VjcmV0&se=1 failed")

    text = describe_storage_error(error)

    assert "c2VjcmV0" not in text
    assert "sig=REDACTED" in text
