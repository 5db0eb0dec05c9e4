"""``python -m tusk_console``: the console on TUSK_CONSOLE_PORT (default 8084)."""

from __future__ import annotations

import uvicorn

from tusk_console.config import ConsoleSettings


def main() -> None:
    settings = ConsoleSettings()
    uvicorn.run(
        "tusk_console.app:create_app", factory=True, host=settings.host, port=settings.port,
        log_config=None, access_log=False,
    )


if __name__ == "__main__":
    main()
