"""KServe's Python model server serving ONNX files through onnxruntime (run in its virtualenv).

    python kserve_server.py --http-port P --model credit=/path/model.onnx [--model …]

KServe has no ONNX runtime of its own in Python (its ONNX serving is Triton's), so each model is
a ``kserve.Model`` holding an onnxruntime session set up exactly as tusk's inference service
sets up its own: one intra-op thread, one inter-op thread, no spinning. One worker process, OIP
v2 over REST, gRPC off. KServe's Python server has no request batching of its own (batching
is its Kubernetes agent's job), so it is measured unbatched only.
"""

from __future__ import annotations

import argparse
import logging
import uuid
from typing import Any

import kserve
import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse

OIP = {
    np.dtype(np.float32): "FP32",
    np.dtype(np.float64): "FP64",
    np.dtype(np.int64): "INT64",
    np.dtype(np.int32): "INT32",
    np.dtype(np.bool_): "BOOL",
}


def session(path: str, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


class OnnxModel(kserve.Model):  # type: ignore[misc]
    def __init__(self, name: str, path: str, threads: int) -> None:
        super().__init__(name)
        self.path = path
        self.threads = threads
        self.session: ort.InferenceSession | None = None

    def load(self) -> bool:
        self.session = session(self.path, self.threads)
        self.ready = True
        return True

    async def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None, **_: Any
    ) -> InferResponse:
        assert self.session is not None
        feeds = {i.name: i.as_numpy() for i in payload.inputs}
        names = [o.name for o in self.session.get_outputs()]
        results = self.session.run(names, feeds)
        outputs = []
        for name, value in zip(names, results, strict=True):
            array = np.asarray(value)
            output = InferOutput(name=name, shape=list(array.shape), datatype=OIP[array.dtype])
            output.set_data_from_numpy(array, binary_data=False)
            outputs.append(output)
        return InferResponse(
            model_name=self.name,
            infer_outputs=outputs,
            response_id=payload.id or str(uuid.uuid4()),
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    models = []
    for item in args.model:
        name, _, path = item.partition("=")
        model = OnnxModel(name, path, args.threads)
        model.load()
        models.append(model)
    server = kserve.ModelServer(
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        enable_grpc=False,
        workers=1,
        enable_latency_logging=False,
    )
    # No line logged per request, as tusk's inference service logs none: the constructor has
    # just configured KServe's logging, so this comes after it.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    server.start(models)


if __name__ == "__main__":
    main()
