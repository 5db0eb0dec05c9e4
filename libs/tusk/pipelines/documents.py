"""Reading spec documents as pachctl does: every file is YAML (JSON being YAML, trailing commas
included), several specs may share a file separated by ``---``, and jsonnet templates render
to one spec or a list of them. Errors say where the text is wrong."""

from __future__ import annotations

import json
import re
from collections.abc import Hashable, Mapping
from typing import Any

import yaml

from tusk.errors import InvalidArgument

MAX_DOCUMENTS = 100
"""Specs one file may hold; more is a mistake, not a pipeline graph."""

_SEPARATOR = re.compile(r"^---[ \t]*$", re.MULTILINE)
_UNBOUND = re.compile(r"function parameter (\w+) not bound")


def prefix(filename: str | None) -> str:
    """``"spec.yaml: "`` to start an error message with, or nothing."""
    return f"{filename}: " if filename else ""


def decode(text: str | bytes, *, filename: str | None = None) -> str:
    if isinstance(text, bytes):
        try:
            return text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidArgument(prefix(filename) + f"the spec is not UTF-8 text: {exc}") from None
    return text


def parse_documents(text: str | bytes, *, filename: str | None = None) -> list[Any]:
    """Every document of a YAML stream (empty documents dropped); keys may not repeat."""
    source = decode(text, filename=filename)
    try:
        documents = list(yaml.load_all(source, Loader=_StrictLoader))
    except yaml.MarkedYAMLError as exc:
        # YAML refuses a tab where JSON allows one (before a value); read such files as JSON.
        fallback = _json_documents(source)
        if fallback is None:
            mark = exc.problem_mark
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            raise InvalidArgument(
                prefix(filename) + f"invalid YAML{where}: {exc.problem or exc}"
            ) from None
        documents = fallback
    except yaml.YAMLError as exc:
        raise InvalidArgument(prefix(filename) + f"invalid YAML: {exc}") from None
    except RecursionError:
        raise InvalidArgument(prefix(filename) + "the spec is nested too deep") from None
    documents = [d for d in documents if d is not None]
    if len(documents) > MAX_DOCUMENTS:
        raise InvalidArgument(
            prefix(filename) + f"{len(documents)} specs in one file; at most {MAX_DOCUMENTS}"
        )
    return documents


def parse_document(text: str | bytes, *, filename: str | None = None) -> Any:
    """The one document of a YAML (or JSON) text; None when it is empty."""
    documents = parse_documents(text, filename=filename)
    if len(documents) > 1:
        raise InvalidArgument(
            prefix(filename) + f"{len(documents)} specs separated by '---', where one is "
            "expected (`tusk pipeline create -f FILE` takes several)"
        )
    return documents[0] if documents else None


def render_jsonnet(
    text: str | bytes, args: Mapping[str, str], *, filename: str | None = None
) -> list[Any]:
    """A jsonnet template rendered with ``args`` as its top-level arguments (strings, as
    ``pachctl --arg k=v`` passes them): the spec it returns, or each spec of the list."""
    import _jsonnet  # type: ignore[import-untyped]  # a C extension without stubs

    source = decode(text, filename=filename)
    try:
        rendered = _jsonnet.evaluate_snippet(
            filename or "spec.jsonnet", source, tla_vars=dict(args)
        )
    except RuntimeError as exc:
        message = " ".join(str(exc).split())
        unbound = _UNBOUND.search(message)
        if unbound is not None:
            message = (
                f"the template needs argument {unbound.group(1)!r}: pass it with "
                f"--arg {unbound.group(1)}=VALUE"
            )
        raise InvalidArgument(prefix(filename) + f"jsonnet: {message}") from None
    value = json.loads(rendered)
    documents = value if isinstance(value, list) else [value]
    if len(documents) > MAX_DOCUMENTS:
        raise InvalidArgument(
            prefix(filename) + f"the template renders {len(documents)} specs; at most "
            f"{MAX_DOCUMENTS}"
        )
    return documents


def _json_documents(text: str) -> list[Any] | None:
    """The text as JSON documents separated by ``---``; None if it is not that."""
    if not text.lstrip().startswith(("{", "[")):
        return None
    documents = []
    for chunk in _SEPARATOR.split(text):
        if not chunk.strip():
            continue
        try:
            documents.append(
                json.loads(_TRAILING_COMMA.sub(r"\1", chunk), strict=False,
                           object_pairs_hook=_no_duplicate_keys)
            )  # fmt: skip
        except (json.JSONDecodeError, _DuplicateKey, RecursionError):
            return None
    return documents


# Only for the fallback: YAML reads trailing commas itself.
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")


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
            if not isinstance(key, Hashable):
                # A sequence or mapping as a key (`? [a, b]`): no spec field is named so, and
                # the set below could not hold it.
                kind = "sequence" if isinstance(key, list) else "mapping"
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"a mapping key must be a plain value such as a field name, not a {kind}",
                    key_node.start_mark,
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
