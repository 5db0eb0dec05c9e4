"""The commands that run services (`tusk up`, `tusk migrate`), which only this package (the
composition root) may import; ``tusk_stack.cli`` hands them to the CLI.

The services (FastAPI, SQLAlchemy, uvicorn) are imported inside the commands that run them:
`tusk ls` should not pay a second of imports for code it never calls.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from tusk import __version__
from tusk.errors import InvalidArgument, TuskError
from tusk_cli.common import fail, note, settings_error

DataDirOption = Annotated[Path | None, typer.Option(
    "--data-dir", metavar="DIR", show_default=False,
    help="Where the SQLite database and the file contents live "
    "(default: TUSK_DATA_DIR, else ~/.local/share/tusk).",
)]


def _overrides(data_dir: Path | None) -> dict[str, object]:
    return {} if data_dir is None else {"data_dir": data_dir.expanduser().absolute()}


def up(
    data_dir: DataDirOption = None,
    port: Annotated[int | None, typer.Option(
        "--port", min=0, max=65535, show_default=False,
        help="Port of the repo service (default: TUSK_REPO_PORT, else 8081).",
    )] = None,
    host: Annotated[str | None, typer.Option(
        "--host", show_default=False,
        help="Address to listen on (default: TUSK_HOST, else 127.0.0.1; 0.0.0.0 for all).",
    )] = None,
    model: Annotated[list[str] | None, typer.Option(
        "--model", metavar="NAME=REPO@BRANCH:/PATH", show_default=False,
        help="Serve an ONNX model from the repos on the inference service (port 8080), "
        "following the branch's new commits; repeatable, added to TUSK_MODELS.",
    )] = None,
) -> None:
    """Run tusk's services in this process until Ctrl-C (embedded mode).

    Metadata goes to SQLite and file contents to a directory, both under the data directory,
    unless TUSK_DATABASE_URL / TUSK_OBJECT_STORE_URL say otherwise. Other shells reach it
    with the default TUSK_REPO_URL (http://127.0.0.1:8081); the console is a browser's
    http://127.0.0.1:8084 (TUSK_CONSOLE_PORT). The S3 gateway listens on
    TUSK_S3_GATEWAY_PORT (default 8085; 0: none).
    """
    from tusk.logging import configure_logging
    from tusk_console.config import ConsoleSettings
    from tusk_inference.config import InferenceSettings
    from tusk_inference.domain.specs import parse_models
    from tusk_repo.config import RepoSettings
    from tusk_scheduler.config import SchedulerSettings
    from tusk_stack.embedded import EmbeddedSettings, run_embedded
    from tusk_trigger.config import TriggerSettings

    try:
        repo = RepoSettings()
        trigger = TriggerSettings()
        scheduler = SchedulerSettings()
        inference = InferenceSettings()
        console = ConsoleSettings()
    except ValidationError as e:
        fail(settings_error(e).message)
    try:
        models = (*inference.models, *parse_models(",".join(model or [])))
        inference = inference.model_copy(update={"models": models})
        inference.all_models()  # a name given twice
    except InvalidArgument as e:
        fail(f"--model: {e.message}")
    except ValueError as e:
        fail(f"--model: {e}")
    update = _overrides(data_dir)
    if port is not None:
        update["port"] = port
    if host is not None:
        update["host"] = host
    repo = repo.model_copy(update=update)
    configure_logging(repo.log_level, json=repo.log_json)
    # uvicorn and other libraries log through the standard library; show their warnings.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        shared = _overrides(data_dir)
        _run_loop(run_embedded(EmbeddedSettings(
            repo=repo,
            trigger=trigger.model_copy(update={**shared, "host": repo.host}),
            scheduler=scheduler.model_copy(update={**shared, "host": repo.host}),
            inference=inference.model_copy(update={**shared, "host": repo.host}),
            console=console.model_copy(update={**shared, "host": repo.host}),
            s3_gateway=True,
        )))
    except TuskError as e:
        fail(e.message)
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were in place
        raise typer.Exit(130) from None


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop when it is installed (uvicorn[standard] brings it, and a service
    started by uvicorn runs on it too): its socket reads and writes cost a fraction of the
    standard loop's, and one process carries every service's traffic here."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def migrate(data_dir: DataDirOption = None) -> None:
    """Create or upgrade the database schema: TUSK_DATABASE_URL, else the embedded SQLite file.

    `tusk up` and the services do this when they start, unless TUSK_MIGRATE_ON_START=false.
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from tusk.db import migrate_sync
    from tusk.settings import CommonSettings

    try:
        settings = CommonSettings().model_copy(update=_overrides(data_dir))
    except ValidationError as e:
        fail(settings_error(e).message)
    url = settings.resolved_database_url
    shown = make_url(url).render_as_string()
    try:
        migrate_sync(url)
    except (SQLAlchemyError, OSError) as e:
        fail(f"cannot migrate {shown}: {e}")
    note(f"database {shown} is up to date")


def version() -> None:
    """Print tusk's version."""
    typer.echo(f"tusk {__version__}")
