"""Exceptions raised by the package.

    ReminderError
    ├── ConfigurationError        an app setting is missing or invalid
    ├── TokenError                the managed identity did not issue a token
    ├── InstanceNotActiveError    the named instance is not InProgress, so it cannot be reminded
    ├── RunFailedError            a run tried every target and some reminders failed
    ├── LedgerUnavailableError    the reminder ledger (Table storage) cannot be read or written
    └── GraphError                Graph returned an error, or no response at all
        ├── GraphPermissionError  401 or 403: the identity lacks AccessReview.ReadWrite.All
        ├── GraphNotFoundError    404: the definition or instance does not exist
        ├── GraphThrottledError   429 or 503 still returned when the retry budget ran out
        ├── GraphConnectionError  no response, and the request is known not to have taken effect
        └── GraphUnknownOutcomeError
                                  a POST was sent but its outcome is unknown (504, timeout),
                                  so it was not sent again

httpx and azure-core exceptions are translated into these at the package boundary, with the
original exception as `__cause__`. No message contains a token or an Authorization header.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

REQUIRED_PERMISSION = "AccessReview.ReadWrite.All"


def strip_query(url: str) -> str:
    """Drop the query and fragment of `url`, which can be long and are rarely needed in a log."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class ReminderError(Exception):
    """Base class of every error this package raises on purpose.

    A job that stops on this error after sending some reminders sets `partial_results`, so
    that the caller still learns what was sent.
    """

    partial_results: list[Any] | None = None


class ConfigurationError(ReminderError):
    """One or more app settings are missing or invalid. `problems` names each of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("Invalid app settings: " + "; ".join(self.problems))


class TokenError(ReminderError):
    """The managed identity endpoint did not issue a token for Graph."""

    def __init__(self, identity: str, scope: str, cause: str) -> None:
        self.identity = identity
        self.scope = scope
        super().__init__(
            f"Could not get a token for {scope} from the {identity}: {cause.rstrip('.')}. "
            "Check that the "
            "function app has this managed identity and, for a user-assigned identity, that "
            "AZURE_CLIENT_ID is its client id."
        )


class InstanceNotActiveError(ReminderError):
    """The instance exists, but Graph cannot remind its reviewers: it is not InProgress."""

    def __init__(self, definition_id: str, instance_id: str, status: str) -> None:
        self.definition_id = definition_id
        self.instance_id = instance_id
        self.status = status
        super().__init__(
            f"Access review instance {instance_id} of definition {definition_id} is {status}, "
            "not InProgress, so its reviewers cannot be reminded."
        )


class RunFailedError(ReminderError):
    """A run tried every target, and some failed. `failed` lists their ids.

    A target is an instance, or a whole definition whose instances could not be listed.
    """

    def __init__(self, failed: list[str], total: int) -> None:
        self.failed = list(failed)
        listed = ", ".join(self.failed[:20])
        more = f" and {len(self.failed) - 20} more" if len(self.failed) > 20 else ""
        super().__init__(
            f"{len(self.failed)} of {total} targets failed: {listed}{more}. "
            "The log has the cause and Graph request-id of each."
        )


class LedgerUnavailableError(ReminderError):
    """The reminder ledger could not be read or written, so no reminder may be sent."""

    def __init__(self, operation: str, cause: str) -> None:
        self.operation = operation
        super().__init__(
            f"The reminder ledger is unavailable ({operation} failed: {cause}). No reminder was "
            "sent without a claim in the ledger. Check the AzureWebJobsStorage connection and "
            "the identity's Storage Table Data Contributor role, then try again."
        )


class GraphError(ReminderError):
    """Graph returned an error status, or the request failed in transit."""

    def __init__(
        self,
        message: str,
        *,
        method: str,
        url: str,
        status: int | None = None,
        code: str = "",
        request_id: str | None = None,
    ) -> None:
        self.method = method
        self.url = strip_query(url)
        self.status = status
        self.code = code
        self.graph_message = message
        self.request_id = request_id
        super().__init__(self._describe())

    @property
    def reason(self) -> str:
        """What went wrong, in one line without ids: fit for a result's `reason` field."""
        if self.status is None:
            text = "Graph did not answer"
        else:
            text = f"Graph returned {self.status} {self.code}".rstrip()
        return f"{text}: {self.graph_message}" if self.graph_message else text

    def _hint(self) -> str:
        return ""

    def _describe(self) -> str:
        text = f"Graph {self.method} {self.url} failed. {self.reason}"
        if self.request_id:
            text += f" [request-id {self.request_id}]"
        hint = self._hint()
        return f"{text}. {hint}" if hint else text


class GraphPermissionError(GraphError):
    """Graph rejected the app's token, so the identity lacks the app role or the token is stale."""

    def _hint(self) -> str:
        if self.status == 401:
            return (
                "Graph rejected the app's token: it may have expired, or have been issued for "
                "another cloud than GRAPH_ENDPOINT. Check GRAPH_ENDPOINT and the identity."
            )
        return (
            "The function app's managed identity needs the Microsoft Graph application "
            f"permission {REQUIRED_PERMISSION}. A new grant can take up to 24 hours to reach "
            "the app, because the platform caches managed-identity tokens."
        )


class GraphNotFoundError(GraphError):
    """The definition or instance named in the request does not exist."""


class GraphThrottledError(GraphError):
    """Graph kept throttling (429 or 503) past the retry budget. See `retry_after_s`."""

    def __init__(
        self,
        message: str,
        *,
        method: str,
        url: str,
        status: int | None = None,
        code: str = "",
        request_id: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(
            message, method=method, url=url, status=status, code=code, request_id=request_id
        )

    def _hint(self) -> str:
        wait = f" Graph asked to wait {self.retry_after_s:g} s." if self.retry_after_s else ""
        return f"The retry budget ran out.{wait} Try again later, or lower GRAPH_MAX_CONCURRENCY."


class GraphConnectionError(GraphError):
    """The request got no response, and it had not reached Graph or was safe to repeat."""


class GraphUnknownOutcomeError(GraphError):
    """A POST reached Graph but its outcome is unknown, so it was not repeated."""

    @property
    def reason(self) -> str:
        return (
            f"{super().reason}. The reminder may or may not have been sent, so it was not sent "
            "again"
        )
