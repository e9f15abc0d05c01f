"""State of long reminder jobs, for the asynchronous request-reply pattern.

A request too large to finish within the synchronous budget gets a 202 response with a job id.
A queue-triggered function does the work and stores the final body here, and `GET` on the job
returns it. Each job is one row in the table `reminderjobs`: PartitionKey `job`, RowKey the
job id (a UUID).

Table storage limits a string property to 64 KiB and an entity to 1 MiB, both counted in
UTF-16. So the request and the final body are stored as ASCII-only JSON, cut into chunks of
CHUNK_CHARACTERS in the properties `Request00`, `Request01`, … and `Body00`, `Body01`, ….
A body longer than MAX_BODY_CHARACTERS is replaced by its `summary` and a note.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .ledger import Caller
from .storage import TableBacked, format_time, parse_time

if TYPE_CHECKING:
    from azure.data.tables import TableClient

logger = logging.getLogger(__name__)

JOB_TABLE = "reminderjobs"
JOB_PARTITION = "job"

STATUS_RUNNING = "running"
STATUS_SUCCEEDED = "succeeded"
STATUS_PARTIALLY_SUCCEEDED = "partiallySucceeded"
STATUS_FAILED = "failed"
FINAL_STATUSES = (STATUS_SUCCEEDED, STATUS_PARTIALLY_SUCCEEDED, STATUS_FAILED)

# 32,000 ASCII characters are 64,000 bytes in UTF-16, under the 64 KiB limit of one property.
CHUNK_CHARACTERS = 32_000
# Request and body together stay near 0.9 MB of UTF-16, below the 1 MiB limit of an entity.
MAX_REQUEST_CHARACTERS = 2 * CHUNK_CHARACTERS
MAX_BODY_CHARACTERS = 12 * CHUNK_CHARACTERS

_REQUEST_PREFIX = "Request"
_BODY_PREFIX = "Body"


class JobNotFoundError(LookupError):
    """No job with this id exists in the job table."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"Job {job_id} was not found in the {JOB_TABLE} table.")


@dataclass(frozen=True)
class JobRecord:
    """A job as stored: its status, times (ISO 8601 UTC), request and, once done, its body."""

    job_id: str
    status: str  # STATUS_RUNNING or one of FINAL_STATUSES
    created_at: str
    updated_at: str
    request: dict[str, Any]
    body: dict[str, Any] | None
    caller: Caller

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATUSES


class JobStore(TableBacked):
    """Creates, completes and reads job rows in the `reminderjobs` table."""

    DEFAULT_TABLE = JOB_TABLE

    async def create(self, job_id: str, request: Mapping[str, Any], caller: Caller) -> JobRecord:
        """Insert a running job.

        Raises ValueError when `job_id` is not a UUID, when it already exists or when the
        request's JSON is over MAX_REQUEST_CHARACTERS, and LedgerUnavailableError when storage
        fails.
        """
        _check_job_id(job_id)
        request_json = _to_json(request)
        if len(request_json) > MAX_REQUEST_CHARACTERS:
            raise ValueError(
                f"The request of job {job_id} is {len(request_json)} characters as JSON, over "
                f"the {MAX_REQUEST_CHARACTERS}-character limit of a job row"
            )
        now = format_time(self._clock.time())
        entity: dict[str, Any] = {
            "PartitionKey": JOB_PARTITION,
            "RowKey": job_id,
            "Status": STATUS_RUNNING,
            "CreatedAt": now,
            "UpdatedAt": now,
            **_chunked(_REQUEST_PREFIX, request_json),
            **caller.properties(),
        }

        def insert(client: TableClient) -> bool:
            from azure.core.exceptions import ResourceExistsError

            try:
                client.create_entity(_without_none(entity))
            except ResourceExistsError:
                return False
            return True

        if not await self._store.run(f"create job {job_id}", insert):
            raise ValueError(f"Job {job_id} already exists in the {self._store.table_name} table")
        logger.info("Job %s created", job_id, extra={"job_id": job_id})
        return _record_of(entity)

    async def complete(self, job_id: str, status: str, body: Mapping[str, Any]) -> None:
        """Store the job's final status and body. A second call overwrites both.

        Raises ValueError for a status that is not final, JobNotFoundError when the job does
        not exist, and LedgerUnavailableError when storage fails.
        """
        _check_job_id(job_id)
        if status not in FINAL_STATUSES:
            raise ValueError(f"status must be one of {', '.join(FINAL_STATUSES)}, got {status!r}")
        body_json = _to_json(body)
        truncated = len(body_json) > MAX_BODY_CHARACTERS
        if truncated:
            logger.warning(
                "Job %s: the result is %d characters as JSON, over the limit of %d; "
                "storing only its summary",
                job_id,
                len(body_json),
                MAX_BODY_CHARACTERS,
                extra={"job_id": job_id},
            )
            body_json = _to_json(_shortened(body, len(body_json)))
        changes: dict[str, Any] = {
            "PartitionKey": JOB_PARTITION,
            "RowKey": job_id,
            "Status": status,
            "UpdatedAt": format_time(self._clock.time()),
            "BodyTruncated": truncated,
            **_chunked(_BODY_PREFIX, body_json),
        }

        def merge(client: TableClient) -> bool:
            from azure.core.exceptions import ResourceNotFoundError
            from azure.data.tables import UpdateMode

            try:
                client.update_entity(changes, mode=UpdateMode.MERGE)
            except ResourceNotFoundError:
                return False
            return True

        if not await self._store.run(f"complete job {job_id}", merge):
            raise JobNotFoundError(job_id)
        logger.info("Job %s completed: %s", job_id, status, extra={"job_id": job_id})

    async def begin(self, job_id: str, *, lease_s: float) -> tuple[JobRecord, int] | None:
        """Take the job for one delivery of its queue message, with a conditional write.

        Returns the job and how many deliveries have begun it, this one included. Returns
        None when the job is unknown or done, or when another delivery began it less than
        `lease_s` seconds ago and may still be running. Raises LedgerUnavailableError when
        storage fails.
        """
        if not is_uuid(job_id):
            return None
        now = self._clock.time()

        def take(client: TableClient) -> tuple[dict[str, Any], int] | None:
            from azure.core import MatchConditions
            from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError
            from azure.data.tables import UpdateMode

            try:
                entity = client.get_entity(JOB_PARTITION, job_id)
            except ResourceNotFoundError:
                return None
            if entity.get("Status") in FINAL_STATUSES:
                return None
            started = entity.get("StartedAt")
            if started and now - parse_time(str(started)) < lease_s:
                return None
            attempts = int(entity.get("Deliveries") or 0) + 1
            changes = {
                "PartitionKey": JOB_PARTITION,
                "RowKey": job_id,
                "StartedAt": format_time(now),
                "Deliveries": attempts,
            }
            try:
                client.update_entity(
                    changes,
                    mode=UpdateMode.MERGE,
                    etag=entity.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
            except ResourceModifiedError:
                # Another delivery took the job between our read and our write.
                return None
            return {**entity, **changes}, attempts

        claimed = await self._store.run(f"begin job {job_id}", take)
        if claimed is None:
            return None
        entity, attempts = claimed
        return _record_of(entity), attempts

    async def get(self, job_id: str) -> JobRecord | None:
        """Return the job, or None when no job has this id (or the id is not a UUID).

        Raises LedgerUnavailableError when storage fails.
        """
        if not is_uuid(job_id):
            return None

        def read(client: TableClient) -> dict[str, Any] | None:
            from azure.core.exceptions import ResourceNotFoundError

            try:
                return dict(client.get_entity(JOB_PARTITION, job_id))
            except ResourceNotFoundError:
                return None

        entity = await self._store.run(f"read job {job_id}", read)
        return None if entity is None else _record_of(entity)


def is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def _check_job_id(job_id: str) -> None:
    if not is_uuid(job_id):
        raise ValueError(f"job id must be a UUID in 8-4-4-4-12 form, got {job_id[:80]!r}")


def _to_json(value: Mapping[str, Any]) -> str:
    # ASCII only, so that one character is exactly two bytes in UTF-16 (see CHUNK_CHARACTERS).
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


def _chunked(prefix: str, text: str) -> dict[str, Any]:
    """Split `text` into properties `{prefix}00`, `{prefix}01`, … and `{prefix}Chunks`."""
    chunks = [
        text[start : start + CHUNK_CHARACTERS] for start in range(0, len(text), CHUNK_CHARACTERS)
    ]
    properties: dict[str, Any] = {f"{prefix}Chunks": len(chunks)}
    for index, chunk in enumerate(chunks):
        properties[f"{prefix}{index:02d}"] = chunk
    return properties


def _joined(prefix: str, entity: Mapping[str, Any]) -> str | None:
    count = entity.get(f"{prefix}Chunks")
    if not isinstance(count, int):
        return None
    # Read only the first `count` chunks: a shorter body written later leaves old ones behind.
    return "".join(str(entity.get(f"{prefix}{index:02d}", "")) for index in range(count))


def _shortened(body: Mapping[str, Any], characters: int) -> dict[str, Any]:
    note = (
        f"The full result was {characters} characters as JSON, over the "
        f"{MAX_BODY_CHARACTERS}-character limit of a job row, so only its summary was kept. "
        "The function's log has the outcome of every instance."
    )
    shortened: dict[str, Any] = {"note": note}
    summary = body.get("summary")
    if summary is not None and len(_to_json({"summary": summary})) < MAX_BODY_CHARACTERS // 2:
        shortened["summary"] = summary
    return shortened


def _without_none(properties: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in properties.items() if value is not None}


def _record_of(entity: Mapping[str, Any]) -> JobRecord:
    request_json = _joined(_REQUEST_PREFIX, entity)
    body_json = _joined(_BODY_PREFIX, entity)
    return JobRecord(
        job_id=str(entity["RowKey"]),
        status=str(entity["Status"]),
        created_at=str(entity["CreatedAt"]),
        updated_at=str(entity["UpdatedAt"]),
        request=json.loads(request_json) if request_json else {},
        body=json.loads(body_json) if body_json else None,
        caller=Caller(
            trigger=str(entity.get("Trigger", "")),
            invocation_id=entity.get("InvocationId"),
            workflow_run_id=entity.get("WorkflowRunId"),
            client_tracking_id=entity.get("ClientTrackingId"),
        ),
    )
