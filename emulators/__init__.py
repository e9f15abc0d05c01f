"""Local stand-ins for Microsoft Graph and the App Service managed identity endpoint.

Tests and local runs use these instead of a real tenant. Nothing here is deployed.

    with Emulators.start(page_size=2) as emu:      # seed=False starts an empty tenant
        os.environ.update(emu.environ())           # GRAPH_ENDPOINT, IDENTITY_ENDPOINT, ...
        emu.graph.fail("POST", r"/sendReminder$", 429, retry_after="0.7")
        ...                                        # run the code under test
        assert emu.graph.reminders == [(definition_id, instance_id)]

`GraphEmulator` serves the v1.0 access review definitions, instances and sendReminder
routes, and requires a bearer token that the paired `IdentityEmulator` issued for the Graph
origin. Scripted failures are queued with `GraphEmulator.fail(method, path_pattern, status,
...)` or, equivalently, `GraphEmulator.add_fault(Fault(...))`; `Fault` documents how they
match and what they send. A fault with `hold=True` sends nothing until `release()` or
`stop()`, for testing client timeouts, and `wait_for_held()` waits until it holds. A fault
with `reset=True` drops the connection with a TCP reset. With `passthrough=True` the request
takes effect first, and with `probability` and `seed` a fault hits a repeatable share of
requests. After `deny_access()`, every authenticated request gets 403
Authorization_RequestDenied.

The Graph emulator also serves instance decisions and the stages of multi-stage reviews,
seeded with `add_decision` and `add_stage`, and JSON batches at `POST /v1.0/$batch` (see
`emulators.batch`). Inside a batch, faults match each sub-request's path, and a held fault
delays the whole batch response until `release()`. `Throttle` makes the emulator return 429
beyond a request rate, and `latency_s` makes it slow.

`seed_sample_tenant` adds the fixed-id tenant described in `emulators.sample`.
`python -m emulators` runs both servers until Ctrl+C and prints the variables to export.
"""

from __future__ import annotations

from emulators.faults import Fault
from emulators.graph import GraphEmulator, RecordedRequest
from emulators.harness import Emulators
from emulators.identity import IdentityEmulator, TokenRequest
from emulators.sample import seed_sample_tenant
from emulators.throttle import Throttle

__all__ = [
    "Emulators",
    "Fault",
    "GraphEmulator",
    "IdentityEmulator",
    "RecordedRequest",
    "Throttle",
    "TokenRequest",
    "seed_sample_tenant",
]
