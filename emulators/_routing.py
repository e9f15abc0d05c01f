"""Match a request's method and path against URL templates such as "/items/{item_id}"."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generic, TypeVar
from urllib.parse import unquote

HandlerT = TypeVar("HandlerT")

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _compile_template(template: str) -> re.Pattern[str]:
    parts: list[str] = []
    position = 0
    for placeholder in _PLACEHOLDER.finditer(template):
        parts.append(re.escape(template[position : placeholder.start()]))
        parts.append(f"(?P<{placeholder.group(1)}>[^/]+)")
        position = placeholder.end()
    parts.append(re.escape(template[position:]))
    # Graph treats path segments case-insensitively, so "identitygovernance" also matches.
    return re.compile("".join(parts), re.IGNORECASE)


@dataclass(frozen=True)
class RouteMatch(Generic[HandlerT]):
    """Handler for a request, with the percent-decoded values of the template's placeholders."""

    handler: HandlerT
    params: dict[str, str]


class Router(Generic[HandlerT]):
    """Table of (method, path template) routes, tried in the order they were added."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], HandlerT]] = []

    def add(self, method: str, template: str, handler: HandlerT) -> None:
        """Register `handler` for `method` on paths that match `template` in full."""
        self._routes.append((method.upper(), _compile_template(template), handler))

    def resolve(self, method: str, path: str) -> RouteMatch[HandlerT] | None:
        """Return the first route for `method` whose template matches `path`, or None."""
        for route_method, pattern, handler in self._routes:
            if route_method != method.upper():
                continue
            match = pattern.fullmatch(path)
            if match is not None:
                params = {name: unquote(value) for name, value in match.groupdict().items()}
                return RouteMatch(handler, params)
        return None

    def allowed_methods(self, path: str) -> list[str]:
        """List the methods that have a route for `path`, for a 405 response's Allow header."""
        methods = [method for method, pattern, _ in self._routes if pattern.fullmatch(path)]
        return sorted(set(methods))
