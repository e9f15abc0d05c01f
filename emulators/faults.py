"""Scripted error responses that an emulator returns in place of its normal response."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

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

    def __post_init__(self) -> None:
        if not 100 <= self.status <= 599:
            raise ValueError(f"Fault status must be an HTTP status code, got {self.status}")
        if self.times < 1:
            raise ValueError(f"Fault times must be at least 1, got {self.times}")
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
        self._entries: list[tuple[Fault, re.Pattern[str]]] = []
        self._remaining: list[int] = []

    def add(self, fault: Fault) -> None:
        """Append `fault` after the faults already queued."""
        with self._lock:
            self._entries.append((fault, re.compile(fault.path_pattern)))
            self._remaining.append(fault.times)

    def take(self, method: str, path: str) -> Fault | None:
        """Consume one use of the first fault that matches, and return it (None if none does)."""
        with self._lock:
            for index, (fault, pattern) in enumerate(self._entries):
                if fault.method != ANY_METHOD and fault.method.upper() != method.upper():
                    continue
                if pattern.search(path) is None:
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
