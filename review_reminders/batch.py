"""JSON batching: concurrent Graph requests sent together, up to 20 in one `POST /$batch`.

Each entry of a batch is handled as a direct call would be: its own status, its own
`Retry-After`, its own retry budget. A throttled entry is queued again on its own after the
wait Graph gave it; the rest of its batch is not repeated. When a batch fails as a whole,
its reads are sent again one by one, while a reminder it carried counts as an unknown
outcome and is never sent twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from .errors import (
    GraphConnectionError,
    GraphError,
    GraphPermissionError,
    GraphThrottledError,
    GraphUnknownOutcomeError,
)
from .graph import Reply, error_for, is_retryable, signals_throttling

if TYPE_CHECKING:
    from .graph import GraphClient

logger = logging.getLogger(__name__)

# Graph accepts at most 20 requests in one JSON batch.
MAX_BATCH_SIZE = 20
# Event-loop turns a batch waits for other workers' requests before it leaves. No time passes.
GATHER_TURNS = 3


@dataclass
class _Entry:
    method: str
    path: str
    future: asyncio.Future[Reply]
    started: float
    attempt: int = 1


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _reply_of(item: dict[str, Any], batch_request_id: str | None) -> Reply | None:
    status = item.get("status")
    if not isinstance(status, int):
        return None
    raw_headers = item.get("headers")
    headers = (
        {str(name).lower(): str(value) for name, value in raw_headers.items()}
        if isinstance(raw_headers, dict)
        else {}
    )
    # Entries seldom carry their own request-id; the batch's finds them in Graph's logs.
    if batch_request_id and "request-id" not in headers:
        headers["request-id"] = batch_request_id
    return Reply(status, headers, item.get("body"), _status_phrase(status))


def _describe_briefly(error: GraphError) -> str:
    status = f"{error.status} {error.code}".strip() if error.status else ""
    return ": ".join(part for part in (status, error.graph_message) if part) or "no response"


@dataclass
class Batcher:
    """Collects concurrent `call`s of one GraphClient into JSON batches."""

    client: GraphClient
    max_size: int = MAX_BATCH_SIZE
    batches_sent: int = 0
    _queue: deque[_Entry] = field(default_factory=deque)
    _dispatcher: asyncio.Task[None] | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def call(self, method: str, path: str) -> Reply:
        """Queue one request and wait for its reply; raises GraphError like a direct call."""
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._enqueue(_Entry(method, path, future, self.client.clock.monotonic()))
        return await future

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _enqueue(self, entry: _Entry) -> None:
        self._queue.append(entry)
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch())

    async def _dispatch(self) -> None:
        slots = self.client.slots
        while self._queue:
            # A batch forms only when a slot is free, so entries pile up while all are busy.
            await slots.acquire()
            try:
                for _ in range(GATHER_TURNS):
                    await asyncio.sleep(0)
            except BaseException:
                slots.release()
                raise
            entries: list[_Entry] = []
            while self._queue and len(entries) < self.max_size:
                entry = self._queue.popleft()
                if not entry.future.done():
                    entries.append(entry)
            if not entries:
                slots.release()
                continue
            self._spawn(self._send(entries))

    async def _send(self, entries: list[_Entry]) -> None:
        payload = {
            "requests": [
                {"id": str(index), "method": entry.method, "url": entry.path}
                for index, entry in enumerate(entries)
            ]
        }
        try:
            self.batches_sent += 1
            reply = await self.client.request(
                "POST",
                f"{self.client.root}/$batch",
                json_body=payload,
                paced_count=len(entries),
                hold_slot=False,
            )
        except (GraphPermissionError, GraphThrottledError) as exc:
            for entry in entries:
                self._fail(entry, exc)
            return
        except GraphError as exc:
            self._fall_back(entries, exc)
            return
        except Exception as exc:
            # A token error, or a bug: every caller must learn of it, or it would wait forever.
            for entry in entries:
                self._fail(entry, exc)
            return
        finally:
            self.client.slots.release()

        responses = reply.body.get("responses") if isinstance(reply.body, dict) else None
        by_id: dict[str, Reply] = {}
        for item in responses if isinstance(responses, list) else []:
            if isinstance(item, dict) and (sub_reply := _reply_of(item, reply.request_id)):
                by_id[str(item.get("id"))] = sub_reply
        missing: list[_Entry] = []
        for index, entry in enumerate(entries):
            sub_reply = by_id.get(str(index))
            if sub_reply is None:
                missing.append(entry)
            else:
                self._settle(entry, sub_reply)
        if missing:
            self._fall_back(
                missing,
                GraphError(
                    "the batch response has no entry for this request",
                    method="POST",
                    url=f"{self.client.root}/$batch",
                    status=reply.status,
                    request_id=reply.request_id,
                ),
            )

    def _settle(self, entry: _Entry, reply: Reply) -> None:
        client = self.client
        if 200 <= reply.status < 300:
            client.pacer.record_success()
            if not entry.future.done():
                entry.future.set_result(reply)
            return

        url = client.root + entry.path
        error = error_for(entry.method, url, reply, client.clock.time())
        if not is_retryable(entry.method, reply.status):
            self._fail(entry, error)
            return
        retry_after_s = None
        if isinstance(error, GraphThrottledError):
            retry_after_s = error.retry_after_s
        elapsed_s = client.clock.monotonic() - entry.started
        wait_s = client.retry.next_wait(entry.attempt, retry_after_s, elapsed_s)
        if signals_throttling(error, retry_after_s):
            client.pacer.record_throttled(wait_s if wait_s is not None else retry_after_s)
        if wait_s is None:
            self._fail(entry, error)
            return
        if not signals_throttling(error, retry_after_s):
            # Throttling is logged once per pause by the pacer; other retries once each.
            logger.warning(
                "Retrying batched Graph %s %s in %.2f s (attempt %d failed: %s)",
                entry.method,
                entry.path.split("?", 1)[0],
                wait_s,
                entry.attempt,
                reply.status,
                extra={"attempt": entry.attempt, "request_id": error.request_id},
            )
        entry.attempt += 1
        self._spawn(self._requeue_after(entry, wait_s))

    async def _requeue_after(self, entry: _Entry, wait_s: float) -> None:
        await self.client.clock.sleep(wait_s)
        if not entry.future.done():
            self._enqueue(entry)

    def _fail(self, entry: _Entry, error: BaseException) -> None:
        if not entry.future.done():
            entry.future.set_exception(error)

    def _fall_back(self, entries: list[_Entry], error: GraphError) -> None:
        # Nothing in the batch ran when Graph rejected it (4xx) or the connection never opened.
        not_run = isinstance(error, GraphConnectionError) or (
            error.status is not None and 400 <= error.status < 500
        )
        logger.warning(
            "A Graph batch of %d requests failed (%s). Its reads are sent again one by one",
            len(entries),
            _describe_briefly(error),
            extra={"request_id": error.request_id},
        )
        for entry in entries:
            if entry.method == "GET" or not_run:
                self._spawn(self._send_directly(entry))
            else:
                self._fail(
                    entry,
                    GraphUnknownOutcomeError(
                        f"the batch that carried it failed ({_describe_briefly(error)})",
                        method=entry.method,
                        url=self.client.root + entry.path,
                        request_id=error.request_id,
                    ),
                )

    async def _send_directly(self, entry: _Entry) -> None:
        try:
            reply = await self.client.request(entry.method, self.client.root + entry.path)
        except Exception as exc:
            self._fail(entry, exc)
        else:
            if not entry.future.done():
                entry.future.set_result(reply)

    def cancel(self) -> None:
        """Cancel the dispatcher and every pending batch and retry (when the client closes)."""
        for task in [*self._tasks, *([self._dispatcher] if self._dispatcher else [])]:
            task.cancel()
