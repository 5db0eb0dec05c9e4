"""The top-level command table: every entry loads, says what its command says, and nothing is
imported before it is needed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tusk_cli.main import COMMANDS, GROUPS, Entry, build_app
from tusk_stack.cli import STACK_COMMANDS

from .conftest import clean_env

ENTRIES = (*COMMANDS, *STACK_COMMANDS, *GROUPS)


def first_paragraph(text: str) -> str:
    return " ".join(text.split("\n\n")[0].split())


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda entry: entry.name)
def test_each_entry_loads_and_its_summary_is_its_help(entry: Entry) -> None:
    command = entry.load()
    assert command.name == entry.name
    assert getattr(command, "rich_help_panel", None) == entry.panel
    assert first_paragraph(command.short_help or command.help or "") == entry.summary


def test_help_lists_every_command_under_its_panel() -> None:
    result = CliRunner().invoke(build_app(STACK_COMMANDS), ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for entry in ENTRIES:
        assert f" {entry.name} " in result.output
    for panel in {entry.panel for entry in ENTRIES}:
        assert f" {panel} " in result.output


def test_a_typo_is_answered_with_the_nearest_command() -> None:
    result = CliRunner().invoke(build_app(), ["lss"])
    assert result.exit_code == 2
    assert "Did you mean 'ls'" in result.output


def test_a_command_given_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="defined twice: ls"):
        build_app([Entry("ls", "tusk_cli.files:ls", "Data", "again")])


IMPORTED = """
import json, sys
from tusk_stack.cli import main
sys.argv = ["tusk", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(m for m, v in sys.modules.items() if v is not None)), file=sys.stderr)
"""

# What no quick command may import: the services' frameworks, the data libraries, Kafka.
HEAVY = (
    "fastapi", "starlette", "sqlalchemy", "uvicorn", "structlog", "aiokafka", "numpy", "pandas",
    "onnxruntime", "yaml",
    "tusk_repo", "tusk_trigger", "tusk_scheduler", "tusk_inference", "tusk_console",
)


def imported_by(*args: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", IMPORTED, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(TUSK_REPO_URL="http://127.0.0.1:9"),
        check=True,
    )
    return set(json.loads(result.stderr.strip().splitlines()[-1]))


def test_help_imports_no_command() -> None:
    modules = imported_by("--help")
    assert {m for m in modules if m.startswith("tusk_cli")} == {"tusk_cli", "tusk_cli.main"}
    assert not {m for m in modules if m.split(".")[0] in (*HEAVY, "httpx", "pydantic")}


def test_ls_imports_its_own_module_and_nothing_heavy() -> None:
    modules = imported_by("ls", "raw@master")
    assert "tusk_cli.files" in modules
    assert "tusk_cli.pipelines" not in modules
    assert "tusk_stack.commands" not in modules
    assert not {m for m in modules if m.split(".")[0] in HEAVY}
    assert not {m for m in modules if m.split(".")[0] in ("click", "pygments")}  # httpx's CLI
    # The job models and the trigger's client are the pipeline commands' business.
    assert not {"tusk.wire.jobs", "tusk.client.pipelines", "tusk.client.models"} & modules


# Issue 13: `tusk ls` within 0.3 s of CPU. Held here by what it imports, not by a time a loaded
# machine would blur: a listing that gets no answer (the address is a closed port) needs no
# pydantic (settings, models, typer's checks), no rich (the error goes to a pipe) and no models.
NOT_BEFORE_AN_ANSWER = ("pydantic", "pydantic_core", "pydantic_settings", "rich", "typer._adapters")


def test_ls_without_an_answer_imports_no_pydantic_rich_or_models() -> None:
    modules = imported_by("ls", "raw@master")
    assert "tusk_cli.files" in modules  # it ran
    assert not {
        m for m in modules if m in NOT_BEFORE_AN_ANSWER or m.split(".")[0] in NOT_BEFORE_AN_ANSWER
    }
    assert not {m for m in modules if m.startswith(("tusk.wire.", "tusk.auth"))}
    assert not {"tusk.client.contexts", "tusk_cli.commits", "tusk_cli.lifecycle"} & modules


def test_ls_with_an_invalid_setting_still_imports_no_pydantic() -> None:
    result = subprocess.run(
        [sys.executable, "-c", IMPORTED, "ls", "raw@master"],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(TUSK_REPO_URL="nope", TUSK_TIMEOUT="5"),
        check=True,
    )
    *messages, last = result.stderr.strip().splitlines()
    assert messages == [
        "error: invalid configuration: TUSK_REPO_URL: Value error, must start with http:// or "
        "https://"
    ]
    assert not {m for m in json.loads(last) if m.split(".")[0] in NOT_BEFORE_AN_ANSWER}
