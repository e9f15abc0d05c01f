"""A stand-in for the invocation context that the Functions host passes to each function.

The demo and the tests call the registered functions directly, without the host, so they
build this instead. It carries a fresh invocation id and returns None for the other members.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import azure.functions as func

APP_ROOT = Path(__file__).resolve().parent.parent


class InvocationContext(func.Context):
    """The few Context members the functions read; the host supplies the real one."""

    def __init__(self, function_name: str) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return str(APP_ROOT)

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None

    @property
    def thread_local_storage(self) -> Any:
        return None


class QueueOutput(func.Out[str]):
    """The queue output binding as the host would hand it over: keeps what the function sets."""

    def __init__(self) -> None:
        self.value: str | None = None

    def set(self, val: str) -> None:
        self.value = val

    def get(self) -> str:
        if self.value is None:
            raise LookupError("the function set no queue message")
        return self.value
