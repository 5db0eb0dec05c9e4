"""The ``tusk`` console script (and ``python -m tusk_stack``): the CLI's commands, and the
stack's commands that run services, registered here, where both may be imported.

Each entry names its module, imported only when the command runs: `tusk ls` must not pay for
FastAPI, SQLAlchemy and uvicorn, nor `tusk up` for the data commands.
"""

from __future__ import annotations

from tusk_cli.main import Entry, run

SERVICES = "Services"

STACK_COMMANDS = (
    Entry("up", "tusk_stack.commands:up", SERVICES,
          "Run tusk's services in this process until Ctrl-C (embedded mode)."),
    Entry("migrate", "tusk_stack.commands:migrate", SERVICES,
          "Create or upgrade the database schema: TUSK_DATABASE_URL, else the embedded SQLite "
          "file."),
    Entry("version", "tusk_stack.commands:version", SERVICES, "Print tusk's version."),
)


def main() -> None:
    run(STACK_COMMANDS)
