from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from tusk.errors import InvalidArgument
from tusk.settings import CommonSettings
from tusk_inference.domain.specs import Batching, ModelSpec, load_models_file, parse_models


class InferenceSettings(CommonSettings):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, alias="TUSK_INFERENCE_PORT")
    repo_url: str = Field(
        default="http://127.0.0.1:8081",
        alias="TUSK_REPO_URL",
        description="The repo service the models are read from.",
    )
    token: str | None = Field(
        default=None, alias="TUSK_TOKEN", description="Bearer token for the repo API."
    )
    models: Annotated[tuple[ModelSpec, ...], NoDecode] = Field(
        default=(),
        alias="TUSK_MODELS",
        description="name=repo@branch:/path/model.onnx, comma-separated.",
    )
    models_file: Path | None = Field(
        default=None,
        alias="TUSK_MODELS_FILE",
        description="A YAML file of models (added to TUSK_MODELS).",
    )
    models_state: Path | None = Field(
        default=None,
        alias="TUSK_INFERENCE_MODELS_STATE",
        description="The JSON file keeping the models added at runtime (`tusk model add`) "
        "across restarts; default: inference-models.json in the data directory. Give every "
        "replica the same file (a shared volume) for them to serve the same models.",
    )
    max_versions: int = Field(
        default=3,
        ge=1,
        alias="TUSK_INFERENCE_MAX_VERSIONS",
        description="Versions of each model kept loaded (the latest and the most recently used "
        "others), addressable under /versions/{commit}.",
    )
    batching: Batching = Field(
        default="auto",
        alias="TUSK_INFERENCE_BATCHING",
        description="auto: batch the models whose warm-up latency is over "
        "TUSK_INFERENCE_INLINE_MAX_MS; always: every model that can be; never: none.",
    )
    inline_max_ms: float = Field(
        default=0.25,
        ge=0,
        alias="TUSK_INFERENCE_INLINE_MAX_MS",
        description="Models faster than this (median warm-up run, one row) run inline in the "
        "request; slower ones in a thread, batched when they can be.",
    )
    max_batch_size: int = Field(
        default=32,
        ge=1,
        alias="TUSK_INFERENCE_MAX_BATCH_SIZE",
        description="Most rows (first dimension) in one batched run.",
    )
    max_batch_delay_ms: float = Field(
        default=1.0,
        ge=0,
        alias="TUSK_INFERENCE_MAX_BATCH_DELAY_MS",
        description="Latency cap: the longest a request is held for companions under load.",
    )
    queue_limit: int = Field(
        default=256,
        ge=1,
        alias="TUSK_INFERENCE_QUEUE_LIMIT",
        description="Requests waiting for a model that runs off the event loop; over it: 503.",
    )
    ort_threads: int = Field(
        default=1,
        ge=0,
        alias="TUSK_INFERENCE_ORT_THREADS",
        description="onnxruntime intra-op threads per session (0: one per core).",
    )
    warmup_runs: int = Field(
        default=20,
        ge=1,
        alias="TUSK_INFERENCE_WARMUP_RUNS",
        description="Runs on a zero input after loading, to warm up and time the model.",
    )
    max_request_bytes: int = Field(
        default=64 << 20,
        ge=1024,
        alias="TUSK_INFERENCE_MAX_REQUEST_BYTES",
        description="Largest inference request body (413 above it).",
    )
    resync_seconds: float = Field(
        default=60.0,
        gt=0,
        alias="TUSK_INFERENCE_RESYNC_SECONDS",
        description="How often each model's branch head is checked, in case an event was lost.",
    )
    drain_seconds: float = Field(
        default=30.0,
        ge=0,
        alias="TUSK_INFERENCE_DRAIN_SECONDS",
        description="At shutdown, how long queued batches may take to finish.",
    )

    @field_validator("models", mode="before")
    @classmethod
    def _parse_models(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return tuple(parse_models(value))
            except InvalidArgument as e:
                raise ValueError(e.message) from None
        return value

    @field_validator("repo_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("TUSK_REPO_URL must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _check_models_file(self) -> InferenceSettings:
        self.all_models()  # fail at start-up, naming the file, rather than at the first load
        return self

    def all_models(self) -> tuple[ModelSpec, ...]:
        """TUSK_MODELS and then the models of TUSK_MODELS_FILE; a name may appear once."""
        specs = list(self.models)
        if self.models_file is not None:
            try:
                specs += load_models_file(self.models_file)
            except InvalidArgument as e:
                raise ValueError(f"TUSK_MODELS_FILE: {e.message}") from None
        names = [s.name for s in specs]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"model {name!r} is configured twice (TUSK_MODELS and file)")
        return tuple(specs)

    @property
    def resolved_models_state(self) -> Path:
        return self.models_state or self.data_dir / "inference-models.json"
