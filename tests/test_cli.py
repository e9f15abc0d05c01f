"""Tests of the operator command line, run in-process against the local emulators.

`main` gets its tokens from the identity emulator through the real ManagedIdentityCredential
(`--auth managed-identity`), or from a stand-in `az` script on PATH for the default
`--auth azure-cli`, and calls the Graph emulator with httpx.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.identity import ManagedIdentityCredential

from emulators import Emulators
from emulators.sample import (
    GUEST_IN_PROGRESS_INSTANCE_IDS,
    GUEST_REVIEW_DEFINITION_ID,
    MULTI_STAGE_IN_PROGRESS_INSTANCE_ID,
    PRIVILEGED_COMPLETED_INSTANCE_ID,
    PRIVILEGED_IN_PROGRESS_INSTANCE_ID,
    PRIVILEGED_ROLE_DEFINITION_ID,
    SALES_APP_DECIDED_INSTANCE_ID,
    SALES_APP_DEFINITION_ID,
    SAMPLE_ENDING_WITHIN_7_DAYS,
    SAMPLE_IN_PROGRESS_INSTANCES,
    SAMPLE_PENDING_INSTANCES,
)
from review_reminders import cli
from review_reminders.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, LEDGER_WARNING, main

MISSING_ID = "99999999-9999-4999-8999-999999999999"


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulators]:
    with Emulators.start(page_size=2) as emulators:
        monkeypatch.setenv("IDENTITY_ENDPOINT", emulators.identity_endpoint)
        monkeypatch.setenv("IDENTITY_HEADER", emulators.identity_header)
        yield emulators


def run(emu: Emulators, command: str, *args: str) -> int:
    """Run `command` with a managed-identity token from the emulators."""
    return main(
        [
            command,
            "--auth",
            "managed-identity",
            "--graph-endpoint",
            emu.graph_endpoint,
            "--max-concurrency",
            "2",
            "--timeout",
            "5",
            *args,
        ]
    )


def read_json(capsys: pytest.CaptureFixture[str]) -> Any:
    return json.loads(capsys.readouterr().out)


def decision_reads(emu: Emulators) -> list[str]:
    return [request.path for request in emu.graph.requests if "/decisions" in request.path]


# list


def test_list_definition_table(emu: Emulators, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(emu, "list", "--definition-id", GUEST_REVIEW_DEFINITION_ID)

    out = capsys.readouterr().out
    lines = out.splitlines()
    assert code == EXIT_OK
    assert lines[0].split() == ["DEFINITION", "INSTANCE", "STATUS", "ENDS", "PENDING"]
    for instance_id in GUEST_IN_PROGRESS_INSTANCE_IDS:
        row = next(line for line in lines if instance_id in line)
        assert row.startswith("Quarterly guest access review")
        assert "InProgress" in row
        assert row.endswith("yes")
    assert "5 instance(s) of 1 definition(s)." in out
    assert emu.graph.reminders == []


def test_list_all_json(emu: Emulators, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(emu, "list", "--all", "--json")

    items = read_json(capsys)
    pending = {(item["definitionId"], item["instanceId"]): item["pending"] for item in items}
    assert code == EXIT_OK
    assert [(item["definitionId"], item["instanceId"]) for item in items] == list(
        SAMPLE_IN_PROGRESS_INSTANCES
    )
    assert {pair for pair, value in pending.items() if value} == set(SAMPLE_PENDING_INSTANCES)
    assert pending[(SALES_APP_DEFINITION_ID, SALES_APP_DECIDED_INSTANCE_ID)] is False
    assert all(item["status"] == "InProgress" for item in items)
    assert all(item["endDateTime"] for item in items)
    assert all(item["definitionDisplayName"] for item in items)
    assert emu.graph.reminders == []


def test_list_all_table(emu: Emulators, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(emu, "list", "--all")

    out = capsys.readouterr().out
    sales_row = next(line for line in out.splitlines() if SALES_APP_DECIDED_INSTANCE_ID in line)
    multi_stage_row = next(
        line for line in out.splitlines() if MULTI_STAGE_IN_PROGRESS_INSTANCE_ID in line
    )
    assert code == EXIT_OK
    assert sales_row.endswith("no")
    assert multi_stage_row.endswith("yes")
    assert f"{len(SAMPLE_IN_PROGRESS_INSTANCES)} instance(s) of 4 definition(s)." in out


def test_list_without_pending_check(emu: Emulators, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(emu, "list", "--all", "--json", "--no-pending-check")

    items = read_json(capsys)
    assert code == EXIT_OK
    assert len(items) == len(SAMPLE_IN_PROGRESS_INSTANCES)
    assert all(item["pending"] is None for item in items)
    assert decision_reads(emu) == []


def test_list_empty_definition(emu: Emulators, capsys: pytest.CaptureFixture[str]) -> None:
    emu.graph.set_status(
        PRIVILEGED_ROLE_DEFINITION_ID, PRIVILEGED_IN_PROGRESS_INSTANCE_ID, "Completed"
    )

    code = run(emu, "list", "--definition-id", PRIVILEGED_ROLE_DEFINITION_ID)

    assert code == EXIT_OK
    assert capsys.readouterr().out == "No InProgress instances.\n"


def test_list_progress_on_stderr(
    emu: Emulators, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "PROGRESS_INTERVAL_S", 0.0)

    code = run(emu, "list", "--all", "--json", "--progress")

    captured = capsys.readouterr()
    assert code == EXIT_OK
    assert "listed " in captured.err
    assert "definitions..." in captured.err
    assert "listed" not in captured.out
    assert len(json.loads(captured.out)) == len(SAMPLE_IN_PROGRESS_INSTANCES)


def test_progress_off_without_terminal(
    emu: Emulators, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "PROGRESS_INTERVAL_S", 0.0)

    code = run(emu, "list", "--all")

    assert code == EXIT_OK
    assert "listed" not in capsys.readouterr().err


def test_list_pending_check_failure(emu: Emulators, capsys: pytest.CaptureFixture[str]) -> None:
    emu.graph.fail("GET", r"/decisions$", 400, times=1)

    code = run(emu, "list", "--definition-id", PRIVILEGED_ROLE_DEFINITION_ID, "--json")

    captured = capsys.readouterr()
    items = json.loads(captured.out)
    assert code == EXIT_FAILED
    assert items[0]["pending"] is None
    assert "Graph returned 400" in items[0]["pendingError"]
    assert "could not read the decisions" in captured.err


def test_list_missing_definition(emu: Emulators, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(emu, "list", "--definition-id", MISSING_ID)

    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "404" in err
    assert "Check the id" in err


# remind


def test_remind_one_instance(emu: Emulators, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(
        emu,
        "remind",
        "--definition-id",
        PRIVILEGED_ROLE_DEFINITION_ID,
        "--instance-id",
        PRIVILEGED_IN_PROGRESS_INSTANCE_ID,
    )

    captured = capsys.readouterr()
    assert code == EXIT_OK
    assert emu.graph.reminders == [
        (PRIVILEGED_ROLE_DEFINITION_ID, PRIVILEGED_IN_PROGRESS_INSTANCE_ID)
    ]
    assert captured.err.splitlines()[0] == LEDGER_WARNING
    assert PRIVILEGED_IN_PROGRESS_INSTANCE_ID in captured.out
    assert captured.out.endswith("1 sent, 0 skipped, 0 failed.\n")


def test_remind_definition_json(emu: Emulators, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(emu, "remind", "--definition-id", GUEST_REVIEW_DEFINITION_ID, "--json")

    body = read_json(capsys)
    assert code == EXIT_OK
    assert body["summary"] == {"sent": 5, "skipped": 0, "failed": 0, "wouldSend": 0}
    assert [result["instanceId"] for result in body["results"]] == list(
        GUEST_IN_PROGRESS_INSTANCE_IDS
    )
    assert all(result["outcome"] == "sent" for result in body["results"])
    assert all(result["definitionId"] == GUEST_REVIEW_DEFINITION_ID for result in body["results"])
    assert sorted(emu.graph.reminders) == sorted(
        (GUEST_REVIEW_DEFINITION_ID, instance_id) for instance_id in GUEST_IN_PROGRESS_INSTANCE_IDS
    )


def test_remind_all(emu: Emulators, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(emu, "remind", "--all")

    out = capsys.readouterr().out
    sales_row = next(line for line in out.splitlines() if SALES_APP_DECIDED_INSTANCE_ID in line)
    assert code == EXIT_OK
    assert sorted(emu.graph.reminders) == sorted(SAMPLE_PENDING_INSTANCES)
    assert "skipped" in sales_row
    assert "no pending decisions" in sales_row
    assert out.endswith(f"{len(SAMPLE_PENDING_INSTANCES)} sent, 1 skipped, 0 failed.\n")


def test_dry_run_sends_nothing(emu: Emulators, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(emu, "remind", "--all", "--dry-run", "--json")

    captured = capsys.readouterr()
    body = json.loads(captured.out)
    assert code == EXIT_OK
    assert emu.graph.reminders == []
    assert [r.path for r in emu.graph.requests if r.path.endswith("/sendReminder")] == []
    assert body["summary"]["wouldSend"] == len(SAMPLE_PENDING_INSTANCES)
    assert body["summary"]["sent"] == 0
    assert LEDGER_WARNING not in captured.err


def test_dry_run_table(emu: Emulators, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(emu, "remind", "--definition-id", GUEST_REVIEW_DEFINITION_ID, "--dry-run")

    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert out.count("wouldSend") == len(GUEST_IN_PROGRESS_INSTANCE_IDS)
    assert out.endswith("Dry run, nothing was sent: 5 would be sent, 0 skipped, 0 failed.\n")


def test_remind_ending_within_days(emu: Emulators, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(emu, "remind", "--all", "--ending-within-days", "7", "--json")

    body = read_json(capsys)
    expected = [pair for pair in SAMPLE_ENDING_WITHIN_7_DAYS if pair in SAMPLE_PENDING_INSTANCES]
    assert code == EXIT_OK
    assert sorted(emu.graph.reminders) == sorted(expected)
    assert body["summary"]["sent"] == len(expected)
    assert body["summary"]["skipped"] == len(SAMPLE_IN_PROGRESS_INSTANCES) - len(expected)


def test_remind_without_pending_check(emu: Emulators, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(emu, "remind", "--all", "--no-pending-check", "--json")

    body = read_json(capsys)
    assert code == EXIT_OK
    assert body["summary"]["sent"] == len(SAMPLE_IN_PROGRESS_INSTANCES)
    assert decision_reads(emu) == []


def test_remind_progress_on_stderr(
    emu: Emulators, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "PROGRESS_INTERVAL_S", 0.0)

    code = run(emu, "remind", "--all", "--dry-run", "--progress")

    captured = capsys.readouterr()
    assert code == EXIT_OK
    assert "processed " in captured.err
    assert "wouldSend" in captured.err
    assert "processed" not in captured.out


def test_failed_send_exits_1(emu: Emulators, capsys: pytest.CaptureFixture[str]) -> None:
    # The pattern also matches a sendReminder that travels inside a $batch.
    emu.graph.fail("POST", r"/sendReminder$", 500, times=1)

    code = run(emu, "remind", "--definition-id", GUEST_REVIEW_DEFINITION_ID, "--json")

    body = read_json(capsys)
    failed = [result for result in body["results"] if result["outcome"] == "failed"]
    assert code == EXIT_FAILED
    assert body["summary"]["failed"] == 1
    assert body["summary"]["sent"] == 4
    assert "Graph returned 500" in failed[0]["reason"]
    assert len(emu.graph.reminders) == 4


def test_inactive_instance_exits_1(emu: Emulators, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(
        emu,
        "remind",
        "--definition-id",
        PRIVILEGED_ROLE_DEFINITION_ID,
        "--instance-id",
        PRIVILEGED_COMPLETED_INSTANCE_ID,
    )

    err = capsys.readouterr().err
    assert code == EXIT_FAILED
    assert "not InProgress" in err
    assert emu.graph.reminders == []


def test_missing_instance_exits_2(emu: Emulators, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(
        emu, "remind", "--definition-id", PRIVILEGED_ROLE_DEFINITION_ID, "--instance-id", MISSING_ID
    )

    assert code == EXIT_USAGE
    assert "404" in capsys.readouterr().err
    assert emu.graph.reminders == []


# Permission and token errors


@pytest.mark.parametrize("command", [["list", "--all"], ["remind", "--all"]])
def test_permission_denied_exits_2(
    emu: Emulators, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    emu.graph.deny_access()

    code = run(emu, *command)

    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "Graph returned 403" in err
    assert "AccessReview.ReadWrite.All" in err
    assert "system-assigned managed identity" in err
    assert emu.graph.reminders == []


def test_denied_send_reports_partial(emu: Emulators, capsys: pytest.CaptureFixture[str]) -> None:
    emu.graph.fail("POST", r"/sendReminder$", 403, times=1)

    code = run(emu, "remind", "--definition-id", GUEST_REVIEW_DEFINITION_ID, "--json")

    captured = capsys.readouterr()
    body = json.loads(captured.out)
    assert code == EXIT_USAGE
    assert body["summary"]["failed"] >= 1
    assert body["summary"]["sent"] == len(emu.graph.reminders)
    assert "AccessReview.ReadWrite.All" in captured.err


def test_token_failure_exits_2(emu: Emulators, capsys: pytest.CaptureFixture[str]) -> None:
    emu.identity.fail(400)

    code = run(emu, "list", "--all")

    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "Could not get a token" in err
    assert "system-assigned managed identity" in err
    assert emu.identity_header not in err
    assert emu.graph.requests == []


def test_invalid_client_id_exits_2(
    emu: Emulators, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_CLIENT_ID", "not-a-guid")

    code = run(emu, "list", "--all")

    assert code == EXIT_USAGE
    assert "AZURE_CLIENT_ID must be the client id" in capsys.readouterr().err
    assert emu.identity.token_requests == []


def write_fake_az(directory: Path, script: str) -> None:
    """Put an `az` shell script first on PATH, in place of the Azure CLI."""
    path = directory / "az"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def fake_az_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    return tmp_path


def test_azure_cli_token_used(
    emu: Emulators,
    capsys: pytest.CaptureFixture[str],
    fake_az_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The stand-in prints a token that the identity emulator issued, as `az` would print one.
    issued = ManagedIdentityCredential().get_token(f"{emu.graph_endpoint}/.default")
    reply = json.dumps(
        {"accessToken": issued.token, "expires_on": issued.expires_on, "tokenType": "Bearer"}
    )
    write_fake_az(fake_az_path, f"echo \"$@\" > '{fake_az_path}/args'\nprintf '%s\\n' '{reply}'\n")
    # Without --graph-endpoint, GRAPH_ENDPOINT from the environment applies.
    monkeypatch.setenv("GRAPH_ENDPOINT", emu.graph_endpoint)

    code = main(["list", "--definition-id", GUEST_REVIEW_DEFINITION_ID, "--json"])

    items = read_json(capsys)
    az_args = (fake_az_path / "args").read_text().split()
    assert code == EXIT_OK
    assert len(items) == len(GUEST_IN_PROGRESS_INSTANCE_IDS)
    assert az_args[:2] == ["account", "get-access-token"]
    assert emu.graph_endpoint in az_args


def test_azure_cli_not_signed_in(capsys: pytest.CaptureFixture[str], fake_az_path: Path) -> None:
    write_fake_az(
        fake_az_path, "echo \"ERROR: Please run 'az login' to setup account.\" >&2\nexit 1\n"
    )

    started = time.monotonic()
    code = main(["list", "--all", "--graph-endpoint", "http://127.0.0.1:9"])

    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "from the Azure CLI" in err
    assert "Run `az login`" in err
    assert time.monotonic() - started < 5


# Usage errors


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["list", "--definition-id", "not-a-guid"], "must be a GUID"),
        (["remind", "--definition-id", GUEST_REVIEW_DEFINITION_ID[:-1]], "must be a GUID"),
        (["remind"], "one of the arguments --definition-id --all is required"),
        (["list"], "one of the arguments --definition-id --all is required"),
        (
            ["remind", "--all", "--definition-id", GUEST_REVIEW_DEFINITION_ID],
            "not allowed with argument",
        ),
        (
            ["remind", "--all", "--instance-id", PRIVILEGED_IN_PROGRESS_INSTANCE_ID],
            "--instance-id needs --definition-id",
        ),
        (["list", "--all", "--graph-endpoint", "http://graph.example.test"], "must use https"),
        (["list", "--all", "--graph-endpoint", "https://graph.microsoft.com/v1.0"], "no path"),
        (["list", "--all", "--graph-endpoint", ""], "must not be empty"),
        (["remind", "--all", "--ending-within-days", "366"], "from 0 to 365"),
        (["remind", "--all", "--ending-within-days", "-1"], "from 0 to 365"),
        (["list", "--all", "--max-concurrency", "0"], "from 1 to 32"),
        (["list", "--all", "--timeout", "soon"], "must be a number"),
        (["list", "--all", "--auth", "password"], "invalid choice"),
        (["send"], "invalid choice"),
    ],
)
def test_usage_error_exits_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code = main(argv)

    captured = capsys.readouterr()
    assert code == EXIT_USAGE
    assert message in captured.err
    assert captured.out == ""


def test_invalid_endpoint_variable_exits_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GRAPH_ENDPOINT", "ftp://graph.example.test")

    code = main(["list", "--all"])

    assert code == EXIT_USAGE
    assert "GRAPH_ENDPOINT must be an absolute https URL" in capsys.readouterr().err


def test_help_lists_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--help"], ["list", "--help"], ["remind", "--help"]):
        code = main(argv)

        out = capsys.readouterr().out
        assert code == EXIT_OK
        assert "exit codes:" in out
        for line in ("  0 ", "  1 ", "  2 ", "  130 "):
            assert line in out


def test_remind_help_explains_ledger(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["remind", "--help"])

    out = capsys.readouterr().out
    assert code == EXIT_OK
    assert "sends without the ledger" in out
    assert "--dry-run" in out
