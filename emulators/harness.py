"""Start the Graph and identity emulators as a pair that trust each other's tokens."""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType

from emulators.graph import DEFAULT_PAGE_SIZE, GraphEmulator
from emulators.identity import DEFAULT_TOKEN_LIFETIME_S, IdentityEmulator
from emulators.sample import seed_sample_tenant
from emulators.throttle import Throttle


class Emulators:
    """Running Graph and identity emulators; the Graph one accepts only tokens from the other."""

    def __init__(self, graph: GraphEmulator, identity: IdentityEmulator) -> None:
        self.graph = graph
        self.identity = identity

    @classmethod
    def start(
        cls,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        seed: bool = True,
        identity_header: str | None = None,
        token_lifetime_s: int = DEFAULT_TOKEN_LIFETIME_S,
        known_client_ids: Iterable[str] | None = None,
        graph_port: int = 0,
        identity_port: int = 0,
        throttle_limit: int | None = None,
        throttle_window_s: float = 10.0,
        latency_s: float = 0.0,
    ) -> Emulators:
        """Start both servers on 127.0.0.1 and seed the sample tenant unless `seed` is False.

        Port 0 picks a free port. With `throttle_limit`, Graph returns 429 to requests beyond
        `throttle_limit` per `throttle_window_s` seconds (see `Throttle`). `latency_s` delays
        each Graph response. Use the result as a context manager to stop both servers.
        """
        throttle = None if throttle_limit is None else Throttle(throttle_limit, throttle_window_s)
        identity = IdentityEmulator(
            identity_header=identity_header,
            token_lifetime_s=token_lifetime_s,
            known_client_ids=known_client_ids,
            port=identity_port,
        ).start()
        try:
            graph = GraphEmulator(
                page_size=page_size,
                token_verifier=identity,
                port=graph_port,
                throttle=throttle,
                latency_s=latency_s,
            ).start()
        except BaseException:
            identity.stop()
            raise
        if seed:
            seed_sample_tenant(graph)
        return cls(graph, identity)

    @property
    def graph_endpoint(self) -> str:
        """Graph origin without a trailing slash or /v1.0, for GRAPH_ENDPOINT."""
        return self.graph.endpoint

    @property
    def identity_endpoint(self) -> str:
        """Token endpoint URL, for IDENTITY_ENDPOINT."""
        return self.identity.endpoint

    @property
    def identity_header(self) -> str:
        """Secret for IDENTITY_HEADER."""
        return self.identity.identity_header

    def environ(self) -> dict[str, str]:
        """Return GRAPH_ENDPOINT, IDENTITY_ENDPOINT and IDENTITY_HEADER for these servers."""
        return {
            "GRAPH_ENDPOINT": self.graph_endpoint,
            "IDENTITY_ENDPOINT": self.identity_endpoint,
            "IDENTITY_HEADER": self.identity_header,
        }

    def stop(self) -> None:
        """Stop both servers, releasing any held Graph responses first."""
        self.graph.stop()
        self.identity.stop()

    def __enter__(self) -> Emulators:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
