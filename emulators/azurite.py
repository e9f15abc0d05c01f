"""Azurite, the Azure Storage emulator from npm, started on 127.0.0.1 for the tests and the demo.

`Azurite(workspace).start()` runs `node_modules/.bin/azurite` with blob, queue and table
services on free ports. `stop()` and `start()` again simulate a storage outage. Data is kept
on disk in `workspace`, so it survives the restart as it would survive a real outage.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_BIN = REPO_ROOT / "node_modules" / ".bin" / "azurite"
HOST = "127.0.0.1"

# Azurite's fixed development account and key, published in Microsoft's Azurite documentation.
# They are the same for every installation, so the key is not a secret.
ACCOUNT_NAME = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
_POLL_INTERVAL_S = 0.05


def _free_ports(count: int) -> list[int]:
    """Return `count` distinct ports that were free on 127.0.0.1 a moment ago."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


class Azurite:
    """One Azurite process on fixed loopback ports, which can be stopped and started again."""

    def __init__(self, workspace: Path) -> None:
        self.workspace = workspace
        self.blob_port, self.queue_port, self.table_port = _free_ports(3)
        self.log_path = workspace / "azurite.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def table_endpoint(self) -> str:
        return f"http://{HOST}:{self.table_port}/{ACCOUNT_NAME}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://{HOST}:{self.blob_port}/{ACCOUNT_NAME};"
            f"QueueEndpoint=http://{HOST}:{self.queue_port}/{ACCOUNT_NAME};"
            f"TableEndpoint={self.table_endpoint};"
        )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start Azurite unless it runs, and wait until all three ports accept connections."""
        if self.running:
            return
        command = [
            str(AZURITE_BIN),
            "--location",
            str(self.workspace / "data"),
            "--blobHost",
            HOST,
            "--queueHost",
            HOST,
            "--tableHost",
            HOST,
            "--blobPort",
            str(self.blob_port),
            "--queuePort",
            str(self.queue_port),
            "--tablePort",
            str(self.table_port),
            "--skipApiVersionCheck",
            "--loose",
            "--disableTelemetry",
        ]
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(  # noqa: S603 - fixed command, no shell
                command,
                cwd=self.workspace,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_until_listening()

    def stop(self) -> None:
        """Stop Azurite and wait for it to exit, so its ports refuse connections."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """Stop Azurite for the duration of the block, and start it again after it."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def _wait_until_listening(self) -> None:
        # Polls for the child process to come up; no test logic waits on this loop.
        ports = (self.blob_port, self.queue_port, self.table_port)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                break
            if all(_accepts_connections(port) for port in ports):
                return
            time.sleep(_POLL_INTERVAL_S)
        self.stop()
        raise RuntimeError(
            f"Azurite did not listen on 127.0.0.1 ports {ports} within {START_TIMEOUT_S:.0f} s. "
            f"Last lines of {self.log_path}:\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
