"""Which models to serve: ``name → repo@branch:/path/model.onnx``, from a string or a YAML file.

``TUSK_MODELS="credit=train@master:/model.onnx,other=…"`` or ``TUSK_MODELS_FILE`` naming::

    models:
      credit: train@master:/model.onnx
      slow:
        source: bench@master:/slow.onnx
        batching: always        # auto (default) | always | never
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast, get_args

import yaml

from tusk.errors import InvalidArgument
from tusk.paths import parse_address, validate_name

Batching = Literal["auto", "always", "never"]
BATCHING_MODES: tuple[str, ...] = get_args(Batching)


@dataclass(frozen=True)
class ModelSpec:
    """A served model: the file ``path`` on ``repo@branch``, following the branch's head."""

    name: str
    repo: str
    branch: str
    path: str
    batching: Batching | None = None  # None: the service's default (TUSK_INFERENCE_BATCHING)

    @property
    def source(self) -> str:
        return f"{self.repo}@{self.branch}:{self.path}"


def parse_source(name: str, source: str, batching: Batching | None = None) -> ModelSpec:
    """``repo@branch:/path`` (branch defaults to master) for the model ``name``."""
    validate_name("model", name)
    address = parse_address(source.strip())
    if address.path is None or address.path == "/":
        raise InvalidArgument(
            f"model {name!r}: {source!r} names no file; write it as repo@branch:/path/model.onnx"
        )
    ref = address.ref_or_default
    if ref.ancestry or ref.is_commit_id:
        raise InvalidArgument(
            f"model {name!r}: {source!r} must name a branch (repo@branch:/path), whose new "
            "commits are then served as they arrive"
        )
    return ModelSpec(name, address.repo, ref.base, address.path, batching)


def parse_models(text: str) -> list[ModelSpec]:
    """``name=repo@branch:/path,…`` (``TUSK_MODELS``)."""
    specs = []
    for item in text.split(","):
        if not item.strip():
            continue
        name, equals, source = item.partition("=")
        if not equals:
            raise InvalidArgument(
                f"model {item.strip()!r} has no source: write name=repo@branch:/path/model.onnx"
            )
        specs.append(parse_source(name.strip(), source))
    return _unique(specs)


def load_models_file(path: Path) -> list[ModelSpec]:
    """The models of a YAML file: ``models: {name: source | {source, batching}}``."""
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as e:
        raise InvalidArgument(f"cannot read the models file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise InvalidArgument(f"the models file {path} is not valid YAML: {e}") from None
    if isinstance(document, dict) and "models" in document:
        document = document["models"]
    if document is None:
        return []
    if not isinstance(document, dict):
        raise InvalidArgument(f"{path}: expected a mapping of model name to source")
    specs = []
    for name, entry in document.items():
        specs.append(_file_entry(path, str(name), entry))
    return _unique(specs)


def _file_entry(path: Path, name: str, entry: Any) -> ModelSpec:
    if isinstance(entry, str):
        return parse_source(name, entry)
    if not isinstance(entry, dict) or not isinstance(entry.get("source"), str):
        raise InvalidArgument(
            f"{path}: model {name!r} needs a source: repo@branch:/path/model.onnx"
        )
    unknown = set(entry) - {"source", "batching"}
    if unknown:
        raise InvalidArgument(f"{path}: model {name!r} has unknown keys {sorted(unknown)}")
    batching = entry.get("batching")
    if batching is not None and batching not in BATCHING_MODES:
        raise InvalidArgument(
            f"{path}: model {name!r}: batching must be one of {', '.join(BATCHING_MODES)}"
        )
    return parse_source(name, entry["source"], cast("Batching | None", batching))


def _unique(specs: list[ModelSpec]) -> list[ModelSpec]:
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:
            raise InvalidArgument(f"model {spec.name!r} is configured twice")
        seen.add(spec.name)
    return specs
