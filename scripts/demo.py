"""Run both functions against the local emulators and print what was reminded and why.

Nothing leaves this machine: the Graph and managed-identity emulators listen on 127.0.0.1, and
every credential variable is removed from the environment first, so azure-identity cannot fall
back to the instance metadata address.

    python scripts/demo.py
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import azure.functions as func  # noqa: E402  # after the sys.path change above
from azure.functions.timer import TimerRequest  # noqa: E402

from emulators import Emulators  # noqa: E402
from emulators.azurite import Azurite  # noqa: E402
from emulators.invocation import InvocationContext, QueueOutput  # noqa: E402
from emulators.sample import (  # noqa: E402
    GUEST_REVIEW_DEFINITION_ID,
    PRIVILEGED_COMPLETED_INSTANCE_ID,
    PRIVILEGED_ROLE_DEFINITION_ID,
)

CREDENTIAL_PREFIXES = ("AZURE_", "MSI_", "IDENTITY_", "IMDS_", "MSAL_")


def print_heading(text: str) -> None:
    print(f"\n== {text}")


async def post_reminders(handler: Any, body: dict[str, str]) -> None:
    request = func.HttpRequest(
        method="POST",
        url="http://localhost:7071/api/reminders",
        headers={"content-type": "application/json"},
        body=json.dumps(body).encode(),
    )
    print(f"POST /api/reminders {json.dumps(body)}")
    response = await handler(request, InvocationContext("remind_reviewers"), QueueOutput())
    print(f"-> {response.status_code} {response.mimetype}")
    print(json.dumps(json.loads(response.get_body()), indent=2))


async def print_tenant(emu: Emulators) -> None:
    from review_reminders import runtime

    graph = runtime.get_graph_client()
    reminded = Counter(emu.graph.reminders)
    print(f"{'definition':<32} {'instance':<38} {'status':<11} result")
    async for definition in graph.list_definitions():
        async for instance in graph.list_instances(definition.id, status=None):
            count = reminded[(definition.id, instance.id)]
            if count:
                result = "reminded once" if count == 1 else f"reminded {count} times"
            elif instance.is_in_progress:
                result = "skipped: no pending decisions, every reviewer has decided"
            else:
                result = f"skipped: status is {instance.status}, only InProgress is reminded"
            name = definition.display_name[:31]
            print(f"{name:<32} {instance.id:<38} {instance.status:<11} {result}")


async def run_demo() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("emulators").setLevel(logging.WARNING)
    for name in list(os.environ):
        if name.startswith(CREDENTIAL_PREFIXES):
            del os.environ[name]

    with (
        tempfile.TemporaryDirectory(prefix="azurite-") as workspace,
        Emulators.start(page_size=2) as emu,
    ):
        storage = Azurite(Path(workspace))
        storage.start()
        os.environ.update(emu.environ())
        # The Functions host's own name for its storage connection, mixed case and all.
        os.environ["AzureWebJobsStorage"] = storage.connection_string  # noqa: SIM112
        os.environ["REMINDER_SCHEDULE"] = "0 0 8 * * 1-5"
        print(f"Graph emulator:    {emu.graph_endpoint}")
        print(f"Identity emulator: {emu.identity_endpoint}")
        print(f"Azurite tables:    {storage.table_endpoint}")

        import function_app
        from review_reminders import runtime

        functions = {f.get_function_name(): f for f in function_app.app.get_functions()}
        http_handler = functions["remind_reviewers"].get_user_function()
        timer_handler = functions["remind_reviewers_on_schedule"].get_user_function()

        try:
            print_heading("HTTP trigger: every in-progress instance of one definition")
            await post_reminders(http_handler, {"definitionId": GUEST_REVIEW_DEFINITION_ID})

            print_heading("HTTP trigger: a completed instance cannot be reminded")
            await post_reminders(
                http_handler,
                {
                    "definitionId": PRIVILEGED_ROLE_DEFINITION_ID,
                    "instanceId": PRIVILEGED_COMPLETED_INSTANCE_ID,
                },
            )

            print_heading("Timer trigger: every definition (REMINDER_DEFINITION_IDS is empty)")
            await timer_handler(
                TimerRequest(past_due=False), InvocationContext("remind_reviewers_on_schedule")
            )

            print_heading("Every instance in the emulated tenant")
            await print_tenant(emu)
            total = len(emu.graph.reminders)
            tokens = len(emu.identity.token_requests)
            print(f"\n{total} reminders sent in all, with {tokens} token request(s).")
            print("The timer skipped the instances the HTTP call had just reminded: the ledger")
            print("in Table storage keeps each instance to one reminder per cooldown window.")
        finally:
            await runtime.close()
            storage.stop()


def main() -> None:
    asyncio.run(run_demo())


if __name__ == "__main__":
    main()
