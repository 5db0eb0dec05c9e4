"""The clients' settings, read without pydantic-settings: the same names, precedence and
messages; and the contexts file read the same by the plain reader and by its model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tusk.client.config import ClientSettings, read_contexts
from tusk.client.contexts import ContextStore
from tusk.errors import InvalidArgument


def load(tmp_path: Path, contexts: Any = None, **env: str) -> ClientSettings:
    if contexts is not None:
        (tmp_path / "contexts.json").write_text(json.dumps(contexts))
    return ClientSettings.load({"TUSK_CONFIG_DIR": str(tmp_path), **env})


def test_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path)
    assert (settings.repo_url, settings.timeout, settings.token) == (
        "http://127.0.0.1:8081", 60.0, None,
    )
    assert settings.config_dir == tmp_path


def test_arguments_over_environment_over_context(tmp_path: Path) -> None:
    contexts = {"current": "c", "contexts": {"c": {"repo_url": "http://ctx/", "token": "t1",
                                                  "trigger_url": "http://ctx-trigger"}}}
    settings = load(tmp_path, contexts, TUSK_REPO_URL="http://env/", tusk_token="t2")
    assert settings.context == "c"
    assert settings.repo_url == "http://env"  # a trailing slash dropped, as the model drops it
    assert settings.token == "t2"  # names in any case, as pydantic-settings matched them
    assert settings.trigger_url == "http://ctx-trigger"
    given = ClientSettings.load({"TUSK_CONFIG_DIR": str(tmp_path)}, repo_url="http://arg")
    assert given.repo_url == "http://arg"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TUSK_TIMEOUT": "abc"},
         "TUSK_TIMEOUT: Input should be a valid number, unable to parse string as a number"),
        ({"TUSK_TIMEOUT": "0"}, "TUSK_TIMEOUT: Input should be greater than 0"),
        ({"TUSK_TIMEOUT": "nan"}, "TUSK_TIMEOUT: Input should be greater than 0"),
        ({"TUSK_REPO_URL": "ftp://x", "TUSK_TIMEOUT": "-1"},
         "TUSK_REPO_URL: Value error, must start with http:// or https://; "
         "TUSK_TIMEOUT: Input should be greater than 0"),
    ],
)
def test_invalid_values_name_their_variables(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidArgument) as raised:
        load(tmp_path, **env)
    assert raised.value.message == "invalid configuration: " + message


@pytest.mark.parametrize(("text", "seconds"), [("5", 5.0), (" 5 ", 5.0), ("1e3", 1000.0),
                                               ("1_0", 10.0), (".5", 0.5)])
def test_timeouts_as_pydantic_read_them(tmp_path: Path, text: str, seconds: float) -> None:
    assert load(tmp_path, TUSK_TIMEOUT=text).timeout == seconds


def test_an_unknown_context_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="TUSK_CONTEXT names 'nope', which is not in"):
        load(tmp_path, {"contexts": {}}, TUSK_CONTEXT="nope")


CONTEXT_FILES = [
    {"current": "a", "contexts": {"a": {"repo_url": "http://h:1/", "token": "t"}}},
    {"current": None, "contexts": {"a": {"repo_url": None}, "b": {}}},
    {"current": "a", "other": [1], "contexts": {"a": {"s3_url": "https://s3"}}},
    {},
    {"current": "a", "contexts": {"a": {"repo_url": "ftp://x"}}},
    {"current": "a", "contexts": {"a": {"repo": "http://x"}}},
    {"current": "a", "contexts": {"a": {"token": 5}}},
    {"current": 5},
    {"contexts": []},
    [],
    "{not json",
    '{"current": "a", "contexts": {"a": {"repo_url": "http://x"}}, "n": NaN}',
]


def outcome(read: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "read", read()
    except InvalidArgument as e:
        return "refused", e.message


@pytest.mark.parametrize("content", CONTEXT_FILES, ids=range(len(CONTEXT_FILES)))
def test_the_plain_reader_reads_a_contexts_file_as_its_model_does(
    tmp_path: Path, content: Any
) -> None:
    path = tmp_path / "contexts.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))

    def by_the_model() -> tuple[str | None, dict[str, dict[str, Any]]]:
        data = ContextStore(tmp_path).load()
        return data.current, {n: c.model_dump(exclude_none=True) for n, c in data.contexts.items()}

    assert outcome(lambda: read_contexts(path)) == outcome(by_the_model)


def test_the_environment_names_are_the_fields() -> None:
    assert set(ClientSettings.env_names()) == {
        "TUSK_CONFIG_DIR", "TUSK_CONTEXT", "TUSK_REPO_URL", "TUSK_TRIGGER_URL",
        "TUSK_SCHEDULER_URL", "TUSK_INFERENCE_URL", "TUSK_S3_URL", "TUSK_TOKEN", "TUSK_TIMEOUT",
    }
