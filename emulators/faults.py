"""Scripted error responses that an emulator returns in place of its normal response."""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

from emulators._http import OutgoingResponse

ANY_METHOD = "*"


@dataclass(frozen=True)
class Fault:
    """Error response for the next `times` requests whose method and path match.

    `path_pattern` is a regular expression searched (not fully matched) in the request path,
    which excludes the query string. `method` is compared case-insensitively, and "*" matches
    every method. With `body=None` the emulator writes its usual JSON error for `status`,
    using `code` as the error code when given. Any other `body`, including an empty one, is
    sent as is, with `content_type` when given, else text/plain for a non-empty body.
    `retry_after` is copied verbatim into the Retry-After header. With `hold=True` the
    server keeps the connection open and sends nothing until the emulator's `release()` or
    `stop()` runs, then sends the response.

    With `reset=True` the server sends no response and closes the connection with a TCP
    reset (after the hold, when `hold` is also set). With `passthrough=True` the request is
    handled as usual, so a sendReminder takes effect. Only `hold` and `reset` then apply to
    its response, and `status`, `body`, `content_type`, `retry_after` and `code` are unused.

    With `probability` below 1, each matching request draws from a random generator seeded
    with `seed`, one generator per fault, and the fault applies with that chance. A request
    that it spares goes on to the next fault or to the normal response, and `times` counts
    only the requests that the fault applied to. The draws follow the order in which
    requests reach the fault, so with concurrent clients a seed repeats about the same share
    of faults from run to run, but not always on the same requests.
    """

    method: str
    path_pattern: str
    status: int
    retry_after: str | None = None
    times: int = 1
    body: bytes | str | None = None
    content_type: str | None = None
    hold: bool = False
    code: str | None = None
    reset: bool = False
    passthrough: bool = False
    probability: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 599:
            raise ValueError(f"Fault status must be an HTTP status code, got {self.status}")
        if self.times < 1:
            raise ValueError(f"Fault times must be at least 1, got {self.times}")
        if not 0 < self.probability <= 1:
            raise ValueError(
                f"Fault probability must be above 0 and at most 1, got {self.probability}"
            )
        if self.passthrough and not (self.hold or self.reset):
            raise ValueError("A passthrough fault needs hold=True or reset=True to change anything")
        re.compile(self.path_pattern)

    @property
    def body_bytes(self) -> bytes | None:
        """Custom body encoded as UTF-8, or None for the emulator's default error body."""
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return self.body


class FaultQueue:
    """Thread-safe queue of faults, searched in the order they were added."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[tuple[Fault, re.Pattern[str], random.Random]] = []
        self._remaining: list[int] = []

    def add(self, fault: Fault) -> None:
        """Append `fault` after the faults already queued."""
        # Not for security: a seeded generator makes a fault storm repeatable.
        draws = random.Random(fault.seed)  # noqa: S311
        with self._lock:
            self._entries.append((fault, re.compile(fault.path_pattern), draws))
            self._remaining.append(fault.times)

    def take(self, method: str, path: str) -> Fault | None:
        """Consume one use of the first fault that matches, and return it (None if none does)."""
        with self._lock:
            for index, (fault, pattern, draws) in enumerate(self._entries):
                if fault.method != ANY_METHOD and fault.method.upper() != method.upper():
                    continue
                if pattern.search(path) is None:
                    continue
                if fault.probability < 1 and draws.random() >= fault.probability:
                    continue
                self._remaining[index] -= 1
                if self._remaining[index] == 0:
                    del self._entries[index]
                    del self._remaining[index]
                return fault
        return None

    def clear(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._entries.clear()
            self._remaining.clear()

    def __len__(self) -> int:
        with self._lock:
            return sum(self._remaining)


def fault_response(
    fault: Fault, error_response: Callable[[Fault], OutgoingResponse]
) -> OutgoingResponse:
    """Build the response a fault sends: its own body, or the emulator's error envelope.

    `error_response` builds the envelope when the fault has no body. The Retry-After header,
    hold and reset apply either way.
    """
    body = fault.body_bytes
    if body is None:
        response = error_response(fault)
        if fault.content_type is not None:
            response.headers["Content-Type"] = fault.content_type
    else:
        response = OutgoingResponse(fault.status, body)
        if fault.content_type is not None:
            response.headers["Content-Type"] = fault.content_type
        elif body:
            response.headers["Content-Type"] = "text/plain; charset=utf-8"
    if fault.retry_after is not None:
        response.headers["Retry-After"] = fault.retry_after
    response.hold = fault.hold
    response.reset = fault.reset
    return response
