"""One ONNX model in onnxruntime: its signature, a warm-up that times it, and how it runs.

Loading, warming and timing happen in a worker thread (``Engine.load`` is blocking); the
event loop only ever sees a ready engine. How an engine is executed is chosen from the timing:

- ``inline``: µs-scale models run in the request's own coroutine — a thread hop would cost
  more than the model;
- ``batch``: slower models whose inputs and outputs all have a free first dimension are
  micro-batched (:mod:`tusk_inference.domain.batching`) off the event loop;
- ``thread``: slower models that cannot be batched run one request per worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from tusk.errors import InvalidArgument, TuskError
from tusk_inference.domain.specs import Batching
from tusk_inference.domain.tensors import ORT_TYPES, Array, TensorSpec

Mode = Literal["inline", "thread", "batch"]
WARMUP_BUDGET_SECONDS = 2.0  # warm-up stops early past this, whatever TUSK_INFERENCE_WARMUP_RUNS


_ORT_INVALID_ARGUMENT: type[Exception] = ort.capi.onnxruntime_pybind11_state.InvalidArgument


class ModelFailed(TuskError):
    """onnxruntime failed on an input that matched the model's signature."""

    status_code = 500
    code = "model_failed"


class ModelLoadError(Exception):
    """The file is not a model onnxruntime can serve (corrupt, unsupported types, fails on a
    zero input). Permanent for that file: retrying will not help."""


@dataclass(frozen=True)
class EngineOptions:
    threads: int = 1
    warmup_runs: int = 20
    batching: Batching = "auto"
    inline_max_seconds: float = 0.00025
    max_tensor_elements: int = 1 << 26
    max_output_bytes: int = 256 << 20


class Engine:
    """An onnxruntime session with the tensors it takes and gives, OIP-typed."""

    def __init__(
        self,
        session: ort.InferenceSession,
        inputs: tuple[TensorSpec, ...],
        outputs: tuple[TensorSpec, ...],
        *,
        content_hash: str,
        size_bytes: int,
        latency: float,
        batchable: bool,
        mode: Mode,
    ) -> None:
        self.session = session
        # The binding under InferenceSession.run: that wrapper re-checks the input names and
        # ownership on every call (~10 µs), which decode_request has already done.
        self._run = getattr(session, "_sess", session).run
        self.inputs = inputs
        self.outputs = outputs
        self.input_specs = {s.name: s for s in inputs}
        self.output_specs = {s.name: s for s in outputs}
        self.output_names = [s.name for s in outputs]
        self.content_hash = content_hash
        self.size_bytes = size_bytes
        self.latency = latency
        self.batchable = batchable
        self.mode: Mode = mode

    def run(self, feeds: dict[str, Array]) -> dict[str, Array]:
        """Every output for ``feeds`` (blocking; onnxruntime releases the GIL while it runs)."""
        try:
            results = self._run(self.output_names, feeds, None)
        except _ORT_INVALID_ARGUMENT as e:
            raise InvalidArgument(f"the model rejected the input: {_first_line(e)}") from None
        except Exception as e:  # onnxruntime's own types: Fail, RuntimeException, …
            raise ModelFailed(f"the model failed: {_first_line(e)}") from None
        return dict(zip(self.output_names, results, strict=True))

    @classmethod
    def load(cls, path: Path, content_hash: str, options: EngineOptions) -> Engine:
        """Open, check, warm up and time the model in ``path`` (blocking: call in a thread)."""
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = options.threads
        session_options.inter_op_num_threads = 1
        # Spinning threads would burn the cores the event loop and other requests need.
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session_options.log_severity_level = 3
        try:
            session = ort.InferenceSession(
                str(path), session_options, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own unexported exception types
            raise ModelLoadError(f"onnxruntime cannot load the model: {_first_line(e)}") from None
        inputs = tuple(_spec(arg, "input") for arg in session.get_inputs())
        outputs = tuple(
            _spec(arg, "output") for arg in session.get_outputs() if arg.type in ORT_TYPES
        )
        if not outputs:
            raise ModelLoadError("the model has no tensor output")
        # Before anything is allocated: a 101-byte model may declare a terabyte-sized input,
        # which the zero-input warm-up would otherwise try to make.
        for kind, specs in (("input", inputs), ("output", outputs)):
            for spec in specs:
                _check_declared(kind, spec, options.max_tensor_elements)
        engine = cls(
            session,
            inputs,
            outputs,
            content_hash=content_hash,
            size_bytes=path.stat().st_size,
            latency=0.0,
            batchable=False,
            mode="inline",
        )
        engine.latency = engine._warm_up(options.warmup_runs, options.max_output_bytes)
        engine.batchable = engine._check_batchable()
        engine.mode = choose_mode(engine.latency, engine.batchable, options)
        return engine

    def _warm_up(self, runs: int, max_output_bytes: int) -> float:
        """The time of one run on one row: the fastest run after the first (which warms
        onnxruntime up). The fastest, because other processes on the machine only ever add
        to a run's time; the model's own cost is what decides how it is served."""
        feeds = self.zero_feeds(1)
        timings: list[float] = []
        deadline = time.perf_counter() + WARMUP_BUDGET_SECONDS
        for _ in range(runs):
            started = time.perf_counter()
            try:
                results = self.session.run(self.output_names, feeds)
            except Exception as e:
                raise ModelLoadError(
                    f"the model fails on a zero input of shape "
                    f"{[list(a.shape) for a in feeds.values()]}: {_first_line(e)}"
                ) from None
            timings.append(time.perf_counter() - started)
            produced = sum(r.nbytes for r in results if isinstance(r, np.ndarray))
            if produced > max_output_bytes:
                raise ModelLoadError(
                    f"the model answers one zero row with {produced} bytes of outputs, over "
                    f"the {max_output_bytes}-byte limit (TUSK_INFERENCE_MAX_OUTPUT_BYTES)"
                )
            if started > deadline:
                break
        return min(timings[1:] or timings)

    def _check_batchable(self) -> bool:
        """Whether rows can be stacked: every input and output has a free first dimension,
        and two rows in give two rows out."""
        if not all(s.shape and s.shape[0] == -1 for s in self.inputs):
            return False
        if not all(not s.shape or s.shape[0] == -1 for s in self.outputs):
            return False
        try:
            results = self.session.run(self.output_names, self.zero_feeds(2))
        except Exception:
            return False
        return all(r.ndim and r.shape[0] == 2 for r in results)

    def zero_feeds(self, rows: int) -> dict[str, Array]:
        feeds: dict[str, Array] = {}
        for spec in self.inputs:
            shape = [
                rows if i == 0 and d == -1 else (1 if d == -1 else d)
                for i, d in enumerate(spec.shape)
            ]
            if spec.datatype == "BYTES":
                feeds[spec.name] = np.full(shape, "", dtype=object)
            else:
                feeds[spec.name] = np.zeros(shape, dtype=spec.dtype)
        return feeds


def choose_mode(latency: float, batchable: bool, options: EngineOptions) -> Mode:
    if options.batching == "always" and batchable:
        return "batch"
    if latency < options.inline_max_seconds:
        return "inline"
    return "batch" if batchable and options.batching == "auto" else "thread"


def _spec(arg: Any, kind: str) -> TensorSpec:
    datatype = ORT_TYPES.get(arg.type)
    if datatype is None:
        raise ModelLoadError(f"{kind} {arg.name!r} has type {arg.type}, which OIP cannot carry")
    # Symbolic ("N", "batch") or unknown (None) dimensions take any size.
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in (arg.shape or ()))
    return TensorSpec(arg.name, datatype, shape)


def _check_declared(kind: str, spec: TensorSpec, limit: int) -> None:
    elements = 1
    for d in spec.shape:
        elements *= max(d, 1)
    if elements > limit:
        raise ModelLoadError(
            f"{kind} {spec.name!r} declares shape {list(spec.shape)}: {elements} elements for "
            f"one row, over the limit of {limit} (TUSK_INFERENCE_MAX_TENSOR_ELEMENTS)"
        )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def describe(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(f"{s.name}:{s.datatype}{list(s.shape)}" for s in specs)
