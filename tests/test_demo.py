"""The README's demo command, run as a new user would run it, in a process of its own."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import clean_environ
from tests.functions_support import ROOT


def test_demo_runs_to_the_end() -> None:
    completed = subprocess.run(  # noqa: S603  # fixed interpreter and script
        [sys.executable, str(ROOT / "scripts" / "demo.py")],
        cwd=ROOT,
        env=clean_environ(),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "reminders sent in all, with 1 token request(s)" in completed.stdout
    assert "skipped: no pending decisions" in completed.stdout
    assert "-> 409 application/problem+json" in completed.stdout
