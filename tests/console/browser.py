"""Debian's Chromium driven by Playwright, for the console's browser tests and benchmark."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import BrowserContext, async_playwright, expect

from tests.backing.browser import CHROMIUM_ARGS, ensure_installed

ROOT = Path(__file__).resolve().parents[2]


def artifacts_dir() -> Path:
    """Where screenshots go: $TUSK_TEST_ARTIFACTS/console, else test-artifacts/console."""
    base = os.environ.get("TUSK_TEST_ARTIFACTS")
    path = (Path(base) if base else ROOT / "test-artifacts") / "console"
    path.mkdir(parents=True, exist_ok=True)
    return path


@asynccontextmanager
async def chromium() -> AsyncIterator[BrowserContext]:
    """A fresh headless Chromium profile; fails (never skips) when no browser can be had."""
    executable = ensure_installed()
    with tempfile.TemporaryDirectory(prefix="tusk-chromium-") as profile:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                profile,
                executable_path=str(executable),
                headless=True,
                args=list(CHROMIUM_ARGS),
                viewport={"width": 1280, "height": 860},
            )
            # Waits are for conditions; these bounds only end a hang. Playwright's own
            # defaults (5 s for an expectation) are deadlines a loaded machine misses.
            context.set_default_timeout(120_000)
            expect.set_options(timeout=120_000)
            try:
                yield context
            finally:
                await context.close()
