from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.console.stack import Stack, tusk_up

TOKEN = "console-test-token"


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """tusk up, open (no tokens)."""
    async with tusk_up(tmp_path_factory.mktemp("console")) as running:
        yield running


@pytest.fixture(scope="module")
async def guarded_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """tusk up with TUSK_API_TOKENS set: every service, the console included, needs one."""
    workdir: Path = tmp_path_factory.mktemp("console-guarded")
    async with tusk_up(workdir, env={"TUSK_API_TOKENS": TOKEN}) as running:
        yield running
