"""Reading a spec document: YAML or JSON, with errors that say where the text is wrong."""

from __future__ import annotations

import json
from typing import Any

import yaml

from tusk.errors import InvalidArgument


def prefix(filename: str | None) -> str:
    """``"spec.yaml: "`` to start an error message with, or nothing."""
    return f"{filename}: " if filename else ""


def parse_document(text: str | bytes, *, filename: str | None = None) -> Any:
    """YAML or JSON (by the file's extension, else by a leading '{'); keys may not repeat."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidArgument(prefix(filename) + f"the spec is not UTF-8 text: {exc}") from None
    as_json = filename.lower().endswith(".json") if filename else text.lstrip().startswith("{")
    if as_json:
        try:
            return json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(
                prefix(filename) + f"invalid JSON at line {exc.lineno}, column {exc.colno}: "
                f"{exc.msg}"
            ) from None
        except _DuplicateKey as exc:
            raise InvalidArgument(prefix(filename) + str(exc)) from None
        except RecursionError:
            raise InvalidArgument(prefix(filename) + "the JSON is nested too deep") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise InvalidArgument(prefix(filename) + "the YAML is nested too deep") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise InvalidArgument(
            prefix(filename) + f"invalid YAML{where}: {exc.problem or exc}"
        ) from None
    except yaml.YAMLError as exc:
        raise InvalidArgument(prefix(filename) + f"invalid YAML: {exc}") from None


class _DuplicateKey(ValueError):
    pass


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(f"duplicate key {key!r}")
        result[key] = value
    return result


class _StrictLoader(yaml.SafeLoader):
    """Refuses a key given twice in one mapping, which PyYAML would silently overwrite."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
