"""Parse Graph JSON batch requests and build their responses, without running any sub-request.

A batch is `POST /v1.0/$batch` with a body such as

    {"requests": [{"id": "1", "method": "POST", "url": "/identityGovernance/...",
                   "headers": {...}, "body": {...}, "dependsOn": ["0"]}]}

where `url` is relative to /v1.0 and `headers`, `body` and `dependsOn` are optional. The
response is `{"responses": [{"id", "status", "headers", "body"}]}`, with the entries in any
order, so clients match them by `id`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from emulators._http import OutgoingResponse
from emulators._model import JsonObject

# Graph rejects a batch of more than 20 requests with 400.
MAX_BATCH_REQUESTS = 20


class BatchFormatError(ValueError):
    """Batch body that Graph would reject as a whole with 400 BadRequest."""


@dataclass(frozen=True)
class BatchItem:
    """One sub-request of a batch. Header names are in lower case."""

    id: str
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    depends_on: tuple[str, ...]

    def header(self, name: str) -> str | None:
        """Return the value of header `name` (any case), or None when it is absent."""
        return self.headers.get(name.lower())


def parse_batch(body: bytes) -> list[BatchItem]:
    """Validate a batch body and return its sub-requests in the order sent.

    Raises BatchFormatError for invalid JSON, a missing or empty `requests` list, more than
    `MAX_BATCH_REQUESTS` items, a duplicate id, an item without id, method or url, an absolute
    url, or a `dependsOn` that names no earlier item.
    """
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as error:
        raise BatchFormatError(f"The batch body is not valid JSON: {error}.") from None
    requests = payload.get("requests") if isinstance(payload, dict) else None
    if not isinstance(requests, list):
        raise BatchFormatError("The batch body must be a JSON object with a 'requests' array.")
    if not requests:
        raise BatchFormatError("The batch 'requests' array is empty; send at least one request.")
    if len(requests) > MAX_BATCH_REQUESTS:
        raise BatchFormatError(
            f"The batch has {len(requests)} requests; Graph accepts at most "
            f"{MAX_BATCH_REQUESTS}. Split it into several batches."
        )

    items: list[BatchItem] = []
    seen_ids: set[str] = set()
    for index, raw in enumerate(requests):
        item = _parse_item(index, raw, seen_ids)
        seen_ids.add(item.id)
        items.append(item)
    return items


def _parse_item(index: int, raw: object, earlier_ids: set[str]) -> BatchItem:
    if not isinstance(raw, dict):
        raise BatchFormatError(f"Batch request {index} must be a JSON object.")
    item_id = _required_string(index, raw, "id")
    if item_id in earlier_ids:
        raise BatchFormatError(f"Batch request id {item_id!r} is used more than once.")
    method = _required_string(index, raw, "method").upper()
    url = _required_string(index, raw, "url")
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        raise BatchFormatError(
            f"Batch request {item_id!r} has the absolute url {url!r}; "
            "use a url relative to /v1.0, such as /identityGovernance/accessReviews/definitions."
        )

    headers = raw.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(name, str) and isinstance(value, str) for name, value in headers.items()
    ):
        raise BatchFormatError(
            f"Batch request {item_id!r} has invalid headers; send an object of strings."
        )

    depends_on = raw.get("dependsOn", [])
    if not isinstance(depends_on, list) or not all(isinstance(dep, str) for dep in depends_on):
        raise BatchFormatError(
            f"Batch request {item_id!r} has an invalid dependsOn; send an array of ids."
        )
    unknown = [dep for dep in depends_on if dep not in earlier_ids]
    if unknown:
        raise BatchFormatError(
            f"Batch request {item_id!r} depends on {', '.join(unknown)}, "
            "which is not an earlier request in this batch."
        )

    body = raw.get("body")
    return BatchItem(
        id=item_id,
        method=method,
        url=url,
        headers={name.lower(): value for name, value in headers.items()},
        body=b"" if body is None else json.dumps(body).encode("utf-8"),
        depends_on=tuple(depends_on),
    )


def _required_string(index: int, raw: Mapping[str, object], name: str) -> str:
    value = raw.get(name)
    if not isinstance(value, str) or not value:
        raise BatchFormatError(f"Batch request {index} is missing '{name}' or it is not a string.")
    return value


def response_entry(item_id: str, response: OutgoingResponse) -> JsonObject:
    """Convert the response to one sub-request into an entry of the batch's `responses`.

    A JSON body is embedded as JSON. Any other non-empty body is sent as a base64 string,
    which is how Graph is reported to return non-JSON bodies inside a batch.
    """
    headers = {
        name: value for name, value in response.headers.items() if name.lower() != "content-length"
    }
    entry: JsonObject = {"id": item_id, "status": response.status, "headers": headers}
    if not response.body:
        return entry
    content_type = next(
        (value for name, value in headers.items() if name.lower() == "content-type"), ""
    )
    if "json" in content_type.lower():
        try:
            entry["body"] = json.loads(response.body)
        except ValueError:
            pass
        else:
            return entry
    entry["body"] = base64.b64encode(response.body).decode("ascii")
    return entry
