"""Which models to serve: TUSK_MODELS, TUSK_MODELS_FILE, and the errors that name them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from tusk.errors import InvalidArgument
from tusk_inference.config import InferenceSettings
from tusk_inference.domain.specs import ModelSpec, load_models_file, parse_models


def test_models_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUSK_MODELS", "credit=train@master:/model.onnx, other=zoo:/m/o.onnx")
    monkeypatch.setenv("TUSK_INFERENCE_PORT", "9090")
    settings = InferenceSettings()
    assert settings.port == 9090
    assert settings.all_models() == (
        ModelSpec("credit", "train", "master", "/model.onnx"),
        ModelSpec("other", "zoo", "master", "/m/o.onnx"),
    )
    assert settings.all_models()[0].source == "train@master:/model.onnx"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("credit", "has no source"),
        ("credit=train@master", "names no file"),
        ("credit=train@master:/", "names no file"),
        ("credit=train@master^1:/m.onnx", "must name a branch"),
        ("credit=train@0123456789abcdef0123456789abcdef:/m.onnx", "must name a branch"),
        ("bad name=train@master:/m.onnx", "invalid model name"),
        ("a=t:/m.onnx,a=t:/n.onnx", "configured twice"),
    ],
)
def test_bad_model_specs_say_why(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment):
        parse_models(text)


def test_a_bad_spec_fails_start_up_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUSK_MODELS", "credit=train")
    with pytest.raises(ValidationError, match="TUSK_MODELS"):
        InferenceSettings()


def test_models_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(
        "models:\n"
        "  credit: train@master:/model.onnx\n"
        "  slow:\n"
        "    source: bench@dev:/slow.onnx\n"
        "    batching: always\n"
    )
    assert load_models_file(path) == [
        ModelSpec("credit", "train", "master", "/model.onnx"),
        ModelSpec("slow", "bench", "dev", "/slow.onnx", "always"),
    ]
    monkeypatch.setenv("TUSK_MODELS_FILE", str(path))
    monkeypatch.setenv("TUSK_MODELS", "extra=x@master:/e.onnx")
    assert [s.name for s in InferenceSettings().all_models()] == ["extra", "credit", "slow"]
    monkeypatch.setenv("TUSK_MODELS", "credit=x@master:/e.onnx")
    with pytest.raises(ValidationError, match="configured twice"):
        InferenceSettings()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("models: [1, 2]", "mapping"),
        ("models:\n  a: {batching: always}", "needs a source"),
        ("models:\n  a: {source: 't@master:/m.onnx', batching: sometimes}", "batching must be"),
        ("models:\n  a: {source: 't@master:/m.onnx', gpu: 1}", "unknown keys"),
        ("models: [", "not valid YAML"),
    ],
)
def test_bad_models_files_say_why(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(text)
    with pytest.raises(InvalidArgument, match=fragment):
        load_models_file(path)
    with pytest.raises(InvalidArgument, match="cannot read"):
        load_models_file(tmp_path / "missing.yaml")


def test_a_model_follows_a_repo_of_a_project() -> None:
    assert parse_models("edges=vision/train@dev:/model.onnx,plain=default/train:/m.onnx") == [
        ModelSpec("edges", "vision/train", "dev", "/model.onnx"),
        ModelSpec("plain", "train", "master", "/m.onnx"),
    ]
    with pytest.raises(InvalidArgument, match="invalid project name"):
        parse_models("edges=bad.p/train:/model.onnx")
