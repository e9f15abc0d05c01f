from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from azure.data.tables import TableClient

from review_reminders.errors import ConfigurationError, LedgerUnavailableError
from review_reminders.job_store import (
    CHUNK_CHARACTERS,
    JOB_PARTITION,
    JOB_TABLE,
    MAX_BODY_CHARACTERS,
    STATUS_PARTIALLY_SUCCEEDED,
    STATUS_RUNNING,
    STATUS_SUCCEEDED,
    JobNotFoundError,
    JobStore,
)
from review_reminders.ledger import Caller
from review_reminders.storage import STORAGE_CONNECTION, StorageOptions
from tests.azurite import Azurite
from tests.conftest import FakeClock

CALLER = Caller("http", invocation_id="inv-1", workflow_run_id="run-1")
REQUEST = {"definitionId": "a1000000-0000-4000-8000-000000000001", "force": False}
NO_RETRIES = StorageOptions(retry_total=0, connection_timeout_s=2.0, read_timeout_s=2.0)


@pytest.fixture
async def jobs(azurite: Azurite, clock: FakeClock) -> AsyncIterator[JobStore]:
    environ = {STORAGE_CONNECTION: azurite.connection_string}
    store = JobStore.from_environ(environ, clock=clock, options=NO_RETRIES)
    yield store
    await store.close()


@pytest.fixture
def job_id() -> str:
    return str(uuid.uuid4())


def raw_row(azurite: Azurite, job_id: str) -> dict[str, Any]:
    with TableClient.from_connection_string(azurite.connection_string, JOB_TABLE) as table:
        return dict(table.get_entity(JOB_PARTITION, job_id))


def results(count: int) -> dict[str, Any]:
    """Build a job body shaped like the HTTP API's, with `count` results."""
    return {
        "summary": {"sent": count, "skipped": 0, "failed": 0},
        "results": [
            {
                "definitionId": REQUEST["definitionId"],
                "instanceId": str(uuid.UUID(int=index)),
                "outcome": "sent",
                "requestId": str(uuid.UUID(int=index + 10**9)),
            }
            for index in range(count)
        ],
    }


async def test_create_returns_running_job(jobs: JobStore, job_id: str) -> None:
    record = await jobs.create(job_id, REQUEST, CALLER)

    assert record.status == STATUS_RUNNING
    assert record.body is None
    assert record.request == REQUEST
    assert record.created_at == record.updated_at


async def test_get_running_job(jobs: JobStore, job_id: str) -> None:
    created = await jobs.create(job_id, REQUEST, CALLER)

    record = await jobs.get(job_id)

    assert record == created
    assert record is not None
    assert not record.done
    assert record.caller == CALLER


async def test_complete_round_trip(jobs: JobStore, job_id: str, clock: FakeClock) -> None:
    await jobs.create(job_id, REQUEST, CALLER)
    clock.now += 42
    body = results(2)

    await jobs.complete(job_id, STATUS_SUCCEEDED, body)
    record = await jobs.get(job_id)

    assert record is not None
    assert record.status == STATUS_SUCCEEDED
    assert record.done
    assert record.body == body
    assert record.request == REQUEST
    assert record.updated_at > record.created_at


async def test_large_body_chunked(jobs: JobStore, job_id: str, azurite: Azurite) -> None:
    await jobs.create(job_id, REQUEST, CALLER)
    body = results(2000)  # about 250,000 characters of JSON

    await jobs.complete(job_id, STATUS_PARTIALLY_SUCCEEDED, body)
    record = await jobs.get(job_id)
    row = raw_row(azurite, job_id)

    assert record is not None
    assert record.body == body
    assert row["BodyChunks"] > 1
    assert all(len(row[f"Body{index:02d}"]) <= CHUNK_CHARACTERS for index in range(2))
    assert row["BodyTruncated"] is False


async def test_oversized_body_keeps_summary(jobs: JobStore, job_id: str) -> None:
    await jobs.create(job_id, REQUEST, CALLER)
    body = results(5000)  # about 620,000 characters, over MAX_BODY_CHARACTERS

    await jobs.complete(job_id, STATUS_SUCCEEDED, body)
    record = await jobs.get(job_id)

    assert record is not None
    assert record.body is not None
    assert record.body["summary"] == body["summary"]
    assert "results" not in record.body
    assert str(MAX_BODY_CHARACTERS) in record.body["note"]


async def test_shorter_body_replaces_longer(jobs: JobStore, job_id: str) -> None:
    await jobs.create(job_id, REQUEST, CALLER)
    await jobs.complete(job_id, STATUS_PARTIALLY_SUCCEEDED, results(2000))

    await jobs.complete(job_id, STATUS_SUCCEEDED, results(1))
    record = await jobs.get(job_id)

    assert record is not None
    assert record.body == results(1)


async def test_non_ascii_body_round_trip(jobs: JobStore, job_id: str) -> None:
    await jobs.create(job_id, REQUEST, CALLER)
    body = {"summary": {"sent": 0}, "note": "Prüfung 審査 ✓ \U0001f600"}

    await jobs.complete(job_id, STATUS_SUCCEEDED, body)
    record = await jobs.get(job_id)

    assert record is not None
    assert record.body == body


async def test_unknown_job_is_none(jobs: JobStore) -> None:
    assert await jobs.get(str(uuid.uuid4())) is None


@pytest.mark.parametrize("job_id", ["../etc", "a1000000-0000-4000-8000-00000000000g", ""])
async def test_invalid_id_is_none(jobs: JobStore, job_id: str) -> None:
    assert await jobs.get(job_id) is None


async def test_create_rejects_duplicate(jobs: JobStore, job_id: str) -> None:
    await jobs.create(job_id, REQUEST, CALLER)

    with pytest.raises(ValueError, match="already exists"):
        await jobs.create(job_id, REQUEST, CALLER)


async def test_create_rejects_non_uuid(jobs: JobStore) -> None:
    with pytest.raises(ValueError, match="UUID"):
        await jobs.create("job-1", REQUEST, CALLER)


async def test_complete_unknown_job_raises(jobs: JobStore) -> None:
    with pytest.raises(JobNotFoundError):
        await jobs.complete(str(uuid.uuid4()), STATUS_SUCCEEDED, results(1))


async def test_complete_rejects_running(jobs: JobStore, job_id: str) -> None:
    await jobs.create(job_id, REQUEST, CALLER)

    with pytest.raises(ValueError, match="status"):
        await jobs.complete(job_id, STATUS_RUNNING, results(1))


async def test_stopped_storage_unavailable(jobs: JobStore, azurite: Azurite) -> None:
    with azurite.stopped(), pytest.raises(LedgerUnavailableError, match="read job"):
        await jobs.get(str(uuid.uuid4()))


def test_missing_settings_raise() -> None:
    with pytest.raises(ConfigurationError, match=STORAGE_CONNECTION):
        JobStore.from_environ({})
