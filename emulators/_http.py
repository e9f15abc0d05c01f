"""Run a small HTTP/1.1 server on 127.0.0.1 that passes each request to one function."""

from __future__ import annotations

import json
import logging
import socket
import struct
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

LOOPBACK_HOST = "127.0.0.1"
# serve_forever checks for shutdown this often, so stop() returns within about this long.
_SHUTDOWN_POLL_S = 0.02

# RFC 9110 forbids a Content-Length header and a body on these responses.
_BODYLESS_STATUSES = frozenset({204, 304})


@dataclass(frozen=True)
class IncomingRequest:
    """HTTP request as read from the socket, with header names in lower case."""

    method: str
    path: str
    raw_query: str
    headers: Mapping[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """Return the value of header `name` (any case), or None when it is absent."""
        return self.headers.get(name.lower())


@dataclass
class OutgoingResponse:
    """HTTP response to write. With `hold` set, it waits for `LoopbackServer.release` or `stop`.

    With `reset` set, nothing is written: the connection is closed with a TCP reset instead.
    """

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hold: bool = False
    reset: bool = False


RequestHandler = Callable[[IncomingRequest], OutgoingResponse]


def json_response(
    status: int, payload: object, headers: Mapping[str, str] | None = None
) -> OutgoingResponse:
    """Build a response whose body is `payload` serialized as JSON."""
    response = OutgoingResponse(status, json.dumps(payload).encode("utf-8"))
    response.headers["Content-Type"] = "application/json"
    if headers:
        response.headers.update(headers)
    return response


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 drops connection attempts when a client opens many at
    # once, and each dropped attempt costs the client a retransmit of a second or more.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that resets its connection (a timeout, a cancelled run) is routine here.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)

    def __init__(self, port: int, owner: LoopbackServer) -> None:
        super().__init__((LOOPBACK_HOST, port), _Handler)
        self.owner = owner


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes. With Nagle's algorithm on, each response then
    # waits for the client's delayed ACK, about 40 ms or more per call on loopback.
    disable_nagle_algorithm = True

    def _handle(self) -> None:
        owner = cast(_Server, self.server).owner
        request = self._read_request()
        if request is None:
            return

        try:
            response = owner.handler(request)
        except Exception:
            logger.exception("%s failed on %s %s", owner.name, request.method, request.path)
            response = OutgoingResponse(500, b"internal error in the emulator")
            response.headers["Content-Type"] = "text/plain; charset=utf-8"

        if response.hold:
            owner.wait_for_release()
        if response.reset:
            self._reset_connection()
            return
        self._write_response(request.method, response)

    def _reset_connection(self) -> None:
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN. The handler's
        # later flush and shutdown of the closed socket then fail quietly.
        self.close_connection = True
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    # http.server dispatches on these names.
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle  # noqa: N815

    def _read_request(self) -> IncomingRequest | None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self.close_connection = True
            self._write_response(
                self.command, OutgoingResponse(411, b"send the body with Content-Length")
            )
            return None

        try:
            length = int(headers.get("content-length", "0") or "0")
        except ValueError:
            self.close_connection = True
            self._write_response(self.command, OutgoingResponse(400, b"invalid Content-Length"))
            return None
        body = self.rfile.read(length) if length > 0 else b""
        url = urlsplit(self.path)
        return IncomingRequest(self.command, url.path, url.query, headers, body)

    def _write_response(self, method: str, response: OutgoingResponse) -> None:
        try:
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            if response.status not in _BODYLESS_STATUSES:
                self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            if method != "HEAD" and response.status not in _BODYLESS_STATUSES:
                self.wfile.write(response.body)
            self.wfile.flush()
        except OSError as error:
            # Expected after a held response: the client has usually timed out and gone.
            logger.debug("Client went away before the response was written: %s", error)
            self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        logger.debug("%s: %s", self.address_string(), format % args)


class LoopbackServer:
    """Threaded HTTP server on 127.0.0.1 that passes every request to `handler`."""

    def __init__(self, name: str, handler: RequestHandler, *, port: int = 0) -> None:
        self.name = name
        self.handler = handler
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._stopped = False
        self._held_count = 0
        self._held_count_changed = threading.Condition(self._lock)

    @property
    def origin(self) -> str:
        """Scheme, host and port, such as "http://127.0.0.1:50123"."""
        if self._server is None:
            raise RuntimeError(f"{self.name} is not running; call start() first")
        return f"http://{LOOPBACK_HOST}:{self._server.server_address[1]}"

    def start(self) -> None:
        """Bind the port and serve requests on a daemon thread."""
        if self._server is not None:
            raise RuntimeError(f"{self.name} is already running")
        self._server = _Server(self._requested_port, self)
        self._stopped = False
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            args=(_SHUTDOWN_POLL_S,),
            name=f"{self.name}-server",
            daemon=True,
        )
        self._thread.start()
        logger.info("%s listening on %s", self.name, self.origin)

    def stop(self) -> None:
        """Release held responses, stop serving and close the listening socket."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        with self._lock:
            self._stopped = True
        self.release()
        server.shutdown()
        server.server_close()
        thread.join()
        self._server = None
        self._thread = None
        logger.info("%s stopped", self.name)

    def release(self) -> None:
        """Let every held response go out. Later held responses wait for the next call."""
        with self._lock:
            self._release.set()
            self._release = threading.Event()

    def wait_for_release(self) -> None:
        """Block the calling request thread until `release` or `stop` runs."""
        with self._lock:
            if self._stopped:
                return
            event = self._release
            self._held_count += 1
            self._held_count_changed.notify_all()
        try:
            event.wait()
        finally:
            with self._lock:
                self._held_count -= 1
                self._held_count_changed.notify_all()

    @property
    def held(self) -> int:
        """Responses held now, waiting for `release` or `stop`."""
        with self._lock:
            return self._held_count

    def wait_for_held(self, count: int, timeout_s: float) -> bool:
        """Block until at least `count` responses are held; return False after `timeout_s`."""
        with self._lock:
            return self._held_count_changed.wait_for(lambda: self._held_count >= count, timeout_s)
