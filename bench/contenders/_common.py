"""Shared parts of every contender process: a loopback-only socket guard and the report.

A contender is started by bench/run.py with the emulators' GRAPH_ENDPOINT, IDENTITY_ENDPOINT and
IDENTITY_HEADER in its environment, runs one job, and prints one JSON object on its last line of
stdout. Importing this module first installs the guard, before any HTTP library is imported.
"""

from __future__ import annotations

import ipaddress
import json
import os
import resource
import socket
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

_LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


def _loopback(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.partition("%")[0]).is_loopback
    except ValueError:
        return False


def _install_loopback_guard() -> None:
    """Make every IP connection or name lookup to anything but loopback fail at once."""
    connect = socket.socket.connect
    connect_ex = socket.socket.connect_ex
    getaddrinfo = socket.getaddrinfo

    def reject(address: Any) -> None:
        raise ConnectionRefusedError(
            f"connection to {address!r} rejected: the benchmark connects to loopback only"
        )

    def guarded_connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            reject(address[0])
        connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            reject(address[0])
        return connect_ex(self, address)

    def guarded_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _loopback(host):
            raise socket.gaierror(
                f"lookup of {host!r} rejected: the benchmark resolves loopback names only"
            )
        return getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = guarded_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = guarded_getaddrinfo


_install_loopback_guard()


def graph_endpoint() -> str:
    """Return the Graph emulator's origin, without /v1.0."""
    return os.environ["GRAPH_ENDPOINT"]


def cpu_s() -> float:
    """Return the user and system CPU time of this process so far, in seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_kib() -> int:
    """Return the peak resident set size of this process's own memory so far, in KiB (VmHWM).

    Not ru_maxrss: Linux carries the high-water mark of a process's memory before exec over to
    the new program, and a subprocess runs in the harness's memory until its exec. The harness's
    emulators hold the whole seeded tenant, so ru_maxrss reports at least the harness's size.
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("/proc/self/status has no VmHWM line")


def ru_maxrss_kib() -> int:
    """Return getrusage's peak RSS in KiB, for comparison (see peak_rss_kib)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


@dataclass
class Report:
    """Figures that a contender reports to the harness.

    Graph and token counts are not among them: the harness reads those from the emulators.
    """

    wall_s: float
    sent: int
    failed: int
    peak_rss_kib: int = field(default_factory=peak_rss_kib)
    ru_maxrss_kib: int = field(default_factory=ru_maxrss_kib)
    cpu_s: float = field(default_factory=cpu_s)
    # Anything contender-specific, such as the pacer's timeline.
    extra: dict[str, Any] = field(default_factory=dict)

    def emit(self) -> None:
        sys.stdout.write(json.dumps(asdict(self)) + "\n")
        sys.stdout.flush()
