"""numpy arrays to and from Open Inference Protocol v2 JSON tensors."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tusk.errors import InvalidArgument
from tusk.wire.inference import InferenceResponse

TensorInput = npt.ArrayLike | Mapping[str, npt.ArrayLike]

_DATATYPES: dict[str, str] = {
    "bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32",
    "uint64": "UINT64", "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
    "float16": "FP16", "float32": "FP32", "float64": "FP64",
}
_NUMPY = {v: k for k, v in _DATATYPES.items()}


@dataclass(frozen=True)
class Prediction:
    """A model's answer: its outputs by name, the version that answered, and its lineage
    (model commit, global id, the data commits that trained it)."""

    outputs: dict[str, npt.NDArray[Any]]
    model: str
    version: str | None
    lineage: dict[str, str | int | float | bool] = field(default_factory=dict)

    @property
    def output(self) -> npt.NDArray[Any]:
        """The only output of a single-output model."""
        if len(self.outputs) != 1:
            raise InvalidArgument(
                f"model {self.model} has {len(self.outputs)} outputs "
                f"({', '.join(self.outputs)}); use .outputs[name]"
            )
        return next(iter(self.outputs.values()))


def encode_request(inputs: Mapping[str, npt.ArrayLike]) -> dict[str, Any]:
    tensors = []
    for name, value in inputs.items():
        array = np.asarray(value)
        if array.dtype == np.float64:
            # Models exported from scikit-learn and PyTorch take float32; numpy's default
            # float64 would be refused by the model, so floats are sent as float32.
            array = array.astype(np.float32)
        datatype = _DATATYPES.get(array.dtype.name)
        if datatype is None:
            raise InvalidArgument(f"input {name!r}: numpy dtype {array.dtype} has no OIP type")
        tensors.append({
            "name": name, "datatype": datatype, "shape": list(array.shape),
            "data": array.reshape(-1).tolist(),
        })
    return {"inputs": tensors}


def prediction(response: InferenceResponse) -> Prediction:
    outputs: dict[str, npt.NDArray[Any]] = {}
    for tensor in response.outputs:
        dtype = _NUMPY.get(tensor.datatype, "object")
        outputs[tensor.name] = np.asarray(tensor.data or [], dtype=dtype).reshape(tensor.shape)
    return Prediction(outputs, response.model_name, response.model_version,
                      dict(response.parameters))
