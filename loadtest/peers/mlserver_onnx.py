"""An MLServer runtime serving one ONNX file through onnxruntime (loaded by MLServer, in its
virtualenv). MLServer 1.x ships no ONNX runtime on PyPI, so this is the custom runtime its
documentation describes: ``MLModel.load`` opens the session, ``predict`` runs it. The session
is set up exactly as tusk's inference service sets up its own: one intra-op thread, one
inter-op thread, no spinning. MLServer's adaptive batching, when a model's settings turn it
on, stacks requests along the first dimension before ``predict`` and splits the answer after.
"""

from __future__ import annotations

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class OnnxRuntime(MLModel):  # type: ignore[misc]
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(self.settings.parameters.extra.get("threads", 1))
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            self.settings.parameters.uri, options, providers=["CPUExecutionProvider"]
        )
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        results = self._session.run(self._outputs, feeds)
        return InferenceResponse(
            model_name=self.name,
            model_version=self.version,
            outputs=[
                NumpyCodec.encode_output(name, value)
                for name, value in zip(self._outputs, results, strict=True)
            ],
        )
