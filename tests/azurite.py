"""The session fixture `azurite`: Azurite on loopback for tests that need real Table storage.

It starts once per test session and stops at the end. Tests can stop and start it again to
simulate a storage outage (see emulators/azurite.py).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from emulators.azurite import ACCOUNT_KEY, ACCOUNT_NAME, AZURITE_BIN, REPO_ROOT, Azurite

__all__ = ["ACCOUNT_KEY", "ACCOUNT_NAME", "Azurite", "azurite"]


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    if not os.access(AZURITE_BIN, os.X_OK):
        pytest.fail(
            f"{AZURITE_BIN} is missing. Install the pinned Azurite with "
            f"`cd {REPO_ROOT} && npm ci --no-audit --no-fund` (./dev.sh test runs it), "
            "then run the tests again.",
            pytrace=False,
        )
    workspace = tmp_path_factory.mktemp("azurite")
    server = Azurite(workspace)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workspace / "data", ignore_errors=True)
