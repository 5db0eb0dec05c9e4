"""Open Inference Protocol v2 tensors: decoding requests into numpy arrays, encoding outputs.

JSON data may be flat or nested (row-major either way). Triton's binary tensor data extension
is understood too, because tritonclient uses it by default: the request's JSON is the first
``Inference-Header-Content-Length`` bytes of the body and each input with a
``binary_data_size`` parameter takes its raw bytes, in order, from the rest; outputs asked for
with ``binary_data`` are sent the same way. ``BYTES`` elements in binary form are each a
4-byte little-endian length followed by the bytes.

Everything a client can get wrong raises ``InvalidArgument`` (400) saying what and where.
"""

from __future__ import annotations

import json
import math
import struct
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tusk.errors import InvalidArgument

Array = npt.NDArray[Any]

# OIP datatype -> numpy dtype (BYTES: numpy object arrays of str, what onnxruntime takes).
NUMPY_TYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
# onnxruntime's type names for the same.
ORT_TYPES: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}
# JSON numbers numpy may infer, per target kind: bool only from true/false, ints only from
# integers (no silent truncation of 1.5), floats from either.
# The default of TUSK_INFERENCE_MAX_TENSOR_ELEMENTS: 256 MiB of FP32.
DEFAULT_MAX_ELEMENTS = 1 << 26
_ACCEPTED_KINDS = {"b": "b", "u": "iu", "i": "iu", "f": "iuf"}
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A model input or output: ``shape`` has -1 where any size goes."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype[Any]:
        return NUMPY_TYPES[self.datatype]


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass(slots=True)
class InferRequest:
    """A decoded request: ``inputs`` in the model's order, ``rows`` the first dimension."""

    id: str | None
    inputs: dict[str, Array]
    outputs: list[RequestedOutput]
    rows: int


def _fail(message: str) -> InvalidArgument:
    return InvalidArgument(message)


def split_body(body: bytes, header_length: str | None) -> tuple[bytes | memoryview, memoryview]:
    """The JSON part and the binary part of a request body."""
    if header_length is None:
        return body, memoryview(b"")
    try:
        length = int(header_length)
    except ValueError:
        raise _fail("Inference-Header-Content-Length must be an integer") from None
    if not 0 <= length <= len(body):
        raise _fail(
            f"Inference-Header-Content-Length is {length} but the body has {len(body)} bytes"
        )
    view = memoryview(body)
    return view[:length], view[length:]


def decode_request(
    body: bytes,
    header_length: str | None,
    model: str,
    inputs: Mapping[str, TensorSpec],
    outputs: Sequence[TensorSpec],
    *,
    max_elements: int = DEFAULT_MAX_ELEMENTS,
) -> InferRequest:
    json_part, binary = split_body(body, header_length)
    try:
        document = json.loads(json_part if isinstance(json_part, bytes) else bytes(json_part))
    except (ValueError, UnicodeDecodeError) as e:
        raise _fail(f"the request body is not valid JSON: {e}") from None
    except RecursionError:
        # The C parser gives up at the interpreter's recursion limit, having built little.
        raise _fail(
            f"the request's JSON is nested deeper than {sys.getrecursionlimit()} levels; "
            "tensor data needs one level per dimension"
        ) from None
    if not isinstance(document, dict):
        raise _fail("the request body must be a JSON object with an 'inputs' list")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise _fail("'id' must be a string")
    parameters = _parameters(document.get("parameters"), "the request")
    raw_inputs = document.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise _fail("'inputs' must be a non-empty list of tensors")

    arrays: dict[str, Array] = {}
    offset = 0
    for i, raw in enumerate(raw_inputs):
        (name, array), used = _decode_input(raw, i, model, inputs, binary, offset, max_elements)
        if name in arrays:
            raise _fail(f"input {name!r} is given twice")
        offset += used
        arrays[name] = array
    if offset != len(binary):
        raise _fail(
            f"the body has {len(binary) - offset} bytes after the inputs' binary data "
            "(check the binary_data_size parameters and Inference-Header-Content-Length)"
        )
    if len(arrays) != len(inputs):
        missing = [name for name in inputs if name not in arrays]
        raise _fail(
            f"missing input(s) {', '.join(map(repr, missing))} for model {model!r} "
            f"(it takes {_names(inputs)})"
        )
    rows = _rows(arrays)
    binary_default = parameters.get("binary_data_output") is True
    requested = _requested_outputs(document.get("outputs"), model, outputs, binary_default)
    return InferRequest(request_id, arrays, requested, rows)


def _names(specs: Iterable[str]) -> str:
    return ", ".join(repr(n) for n in specs)


def _parameters(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(f"'parameters' of {where} must be an object")
    return value


def _decode_input(
    raw: Any,
    index: int,
    model: str,
    specs: Mapping[str, TensorSpec],
    binary: memoryview,
    offset: int,
    max_elements: int = 0,
) -> tuple[tuple[str, Array], int]:
    if not isinstance(raw, dict):
        raise _fail(f"inputs[{index}] must be an object with name, shape, datatype and data")
    name = raw.get("name")
    if not isinstance(name, str):
        raise _fail(f"inputs[{index}] has no 'name'")
    spec = specs.get(name)
    if spec is None:
        raise _fail(f"model {model!r} has no input {name!r} (it takes {_names(specs)})")
    where = f"input {name!r}"
    datatype = raw.get("datatype")
    if datatype != spec.datatype:
        if datatype not in NUMPY_TYPES:
            raise _fail(
                f"{where}: unsupported datatype {datatype!r} "
                f"(one of {', '.join(NUMPY_TYPES)}; this input is {spec.datatype})"
            )
        raise _fail(f"{where} has datatype {datatype} but model {model!r} expects {spec.datatype}")
    shape = raw.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise _fail(f"{where}: 'shape' must be a list of non-negative integers")
    _check_shape(where, model, shape, spec.shape)
    count = math.prod(shape)
    if max_elements and (count > max_elements or any(d > max_elements for d in shape)):
        raise _fail(
            f"{where}: shape {shape if len(str(shape)) < 200 else '[…]'} is over the limit of "
            f"{max_elements} elements (TUSK_INFERENCE_MAX_TENSOR_ELEMENTS)"
        )
    parameters = _parameters(raw.get("parameters"), where)
    size = parameters.get("binary_data_size")
    if size is not None:
        if type(size) is not int or size < 0:
            raise _fail(f"{where}: binary_data_size must be a non-negative integer")
        if "data" in raw:
            raise _fail(f"{where} has both 'data' and binary_data_size")
        if offset + size > len(binary):
            raise _fail(
                f"{where}: binary_data_size is {size} but only {len(binary) - offset} bytes of "
                "binary data are left in the body"
            )
        array = _from_binary(where, spec, shape, count, binary[offset : offset + size])
        return (name, array), size
    if "data" not in raw:
        raise _fail(f"{where} has no 'data'")
    return (name, _from_json(where, spec, shape, count, raw["data"])), 0


def _check_shape(where: str, model: str, shape: list[int], expected: tuple[int, ...]) -> None:
    good = len(shape) == len(expected)
    if good:
        for got, want in zip(shape, expected, strict=True):
            if want != -1 and got != want:
                good = False
                break
    if not good:
        wanted = "[" + ", ".join("-1" if d == -1 else str(d) for d in expected) + "]"
        raise _fail(
            f"{where} has shape {shape} but model {model!r} expects {wanted} (-1: any size)"
        )


def _from_json(where: str, spec: TensorSpec, shape: list[int], count: int, data: Any) -> Array:
    if not isinstance(data, list):
        raise _fail(f"{where}: 'data' must be a list (flat or nested, row-major)")
    if spec.datatype == "BYTES":
        flat = data if all(type(x) is str for x in data) else _flatten_strings(where, data)
        if len(flat) != count:
            raise _fail(f"{where}: shape {shape} needs {count} values, got {len(flat)}")
        array = np.empty(count, dtype=object)
        array[:] = flat
        return array.reshape(shape)
    target = spec.dtype
    if target.kind == "f":
        # The common case, straight to the model's type (JSON null reads as NaN, a missing
        # value); anything odd takes the careful way below, for a precise error.
        try:
            array = np.asarray(data, dtype=target)
        except (ValueError, TypeError):
            pass
        else:
            if array.size != count:
                raise _fail(f"{where}: shape {shape} needs {count} values, got {array.size}")
            return array.reshape(shape)
    try:
        array = np.asarray(data)
    except ValueError:
        raise _fail(f"{where}: 'data' is ragged (nested lists of unequal lengths)") from None
    if array.size != count:
        raise _fail(f"{where}: shape {shape} needs {count} values, got {array.size}")
    if array.dtype.kind in "Of" and target.kind in "iu":
        # Integers beyond int64 make numpy fall back to floats or objects: exact, or refused.
        array = _big_integers(where, spec, data, shape)
    if count and array.dtype.kind not in _ACCEPTED_KINDS[target.kind]:
        raise _fail(f"{where}: 'data' must hold {_describe(spec.datatype)} values")
    if count and target.kind in "iu" and target != array.dtype:
        info = np.iinfo(target)
        if array.min() < info.min or array.max() > info.max:
            raise _fail(f"{where}: a value is out of the range of {spec.datatype}")
    return array.astype(target, copy=False).reshape(shape)


def _big_integers(where: str, spec: TensorSpec, data: list[Any], shape: list[int]) -> Array:
    flat = _flatten(data)
    if not all(type(x) is int for x in flat):
        raise _fail(f"{where}: 'data' must hold integer values")
    try:
        return np.array(flat, dtype=spec.dtype).reshape(shape)
    except OverflowError:
        raise _fail(f"{where}: a value is out of the range of {spec.datatype}") from None


def _describe(datatype: str) -> str:
    if datatype == "BOOL":
        return "true/false"
    return "integer" if datatype.startswith(("INT", "UINT")) else "number"


def _flatten_strings(where: str, data: list[Any]) -> list[str]:
    flat = _flatten(data)
    if not all(type(x) is str for x in flat):
        raise _fail(f"{where}: BYTES data must be strings")
    return flat


def _flatten(data: list[Any]) -> list[Any]:
    flat: list[Any] = []
    stack: list[Any] = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _from_binary(
    where: str, spec: TensorSpec, shape: list[int], count: int, raw: memoryview
) -> Array:
    if spec.datatype == "BYTES":
        items: list[str] = []
        position = 0
        while position < len(raw):
            if position + 4 > len(raw):
                raise _fail(f"{where}: binary BYTES data ends inside an element's length")
            (length,) = _LENGTH.unpack_from(raw, position)
            position += 4
            if position + length > len(raw):
                raise _fail(f"{where}: binary BYTES data ends inside an element")
            items.append(bytes(raw[position : position + length]).decode("utf-8", "replace"))
            position += length
        if len(items) != count:
            raise _fail(f"{where}: shape {shape} needs {count} values, got {len(items)}")
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    dtype = spec.dtype
    if len(raw) != count * dtype.itemsize:
        raise _fail(
            f"{where}: shape {shape} of {spec.datatype} needs {count * dtype.itemsize} bytes "
            f"of binary data, got {len(raw)}"
        )
    # A copy: the request body is freed when the request ends, the array may live in a batch.
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _rows(arrays: Mapping[str, Array]) -> int:
    """The batch dimension: every input's first dimension (1 for scalars)."""
    rows = -1
    for array in arrays.values():
        first = array.shape[0] if array.ndim else 1
        if rows not in (-1, first):
            return -1  # inputs disagree: the request cannot join a batch
        rows = first
    return rows


def _requested_outputs(
    value: Any, model: str, outputs: Sequence[TensorSpec], binary_default: bool
) -> list[RequestedOutput]:
    if value is None:
        return [RequestedOutput(o.name, binary_default) for o in outputs]
    if not isinstance(value, list):
        raise _fail("'outputs' must be a list of {\"name\": …}")
    known = {o.name for o in outputs}
    requested: list[RequestedOutput] = []
    for i, raw in enumerate(value):
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise _fail(f"outputs[{i}] must be an object with a 'name'")
        name = raw["name"]
        if name not in known:
            raise _fail(f"model {model!r} has no output {name!r} (it has {_names(known)})")
        parameters = _parameters(raw.get("parameters"), f"output {name!r}")
        binary = parameters.get("binary_data", binary_default)
        requested.append(RequestedOutput(name, binary is True))
    return requested


# --- responses ---------------------------------------------------------------------------------


def encode_response(
    head: str,
    request_id: str | None,
    requested: Sequence[RequestedOutput],
    specs: Mapping[str, TensorSpec],
    results: Mapping[str, Array],
) -> tuple[bytes, int | None]:
    """The response body, and the JSON part's length when binary outputs follow it.

    ``head`` is the version's pre-rendered ``"model_name":…,"model_version":…,"parameters":…``
    so that a response costs one dump per output, not one of the whole document.
    """
    parts = ["{", head]
    if request_id is not None:
        parts.append(',"id":')
        parts.append(json.dumps(request_id))
    parts.append(',"outputs":[')
    blobs: list[bytes] = []
    for i, output in enumerate(requested):
        array = results[output.name]
        spec = specs[output.name]
        if i:
            parts.append(",")
        parts.append('{"name":')
        parts.append(json.dumps(output.name))
        parts.append(',"datatype":"')
        parts.append(spec.datatype)
        parts.append('","shape":')
        parts.append("[" + ",".join(map(str, array.shape)) + "]")
        if output.binary:
            blob = _to_binary(spec, array)
            blobs.append(blob)
            parts.append(',"parameters":{"binary_data_size":')
            parts.append(str(len(blob)))
            parts.append("}}")
        else:
            parts.append(',"data":')
            parts.append(_json_data(spec, array))
            parts.append("}")
    parts.append("]}")
    document = "".join(parts).encode()
    if not blobs:
        return document, None
    return document + b"".join(blobs), len(document)


_dumps = json.JSONEncoder(separators=(",", ":")).encode


def _json_data(spec: TensorSpec, array: Array) -> str:
    """The values as a JSON list. Finite numbers are joined from their ``repr`` (the shortest
    text that reads back to the same value, as JSON wants), several times faster than the
    encoder on the small outputs typical here; the rest goes through the encoder."""
    if array.dtype.kind in "iu" or (array.dtype.kind == "f" and np.isfinite(array).all()):
        return "[" + ",".join(map(repr, array.ravel().tolist())) + "]"
    if array.dtype.kind == "f":
        # NaN and ±Infinity are not JSON: written as null, as KServe and MLServer do.
        values = array.ravel().tolist()
        return "[" + ",".join(repr(x) if math.isfinite(x) else "null" for x in values) + "]"
    return _dumps(_to_list(spec, array))


def _to_list(spec: TensorSpec, array: Array) -> list[Any]:
    flat: list[Any] = array.ravel().tolist()
    if spec.datatype == "BYTES":
        return [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x) for x in flat]
    return flat


def _to_binary(spec: TensorSpec, array: Array) -> bytes:
    if spec.datatype != "BYTES":
        return np.ascontiguousarray(array, dtype=spec.dtype).tobytes()
    pieces = []
    for item in array.ravel().tolist():
        data = item if isinstance(item, bytes) else str(item).encode()
        pieces.append(_LENGTH.pack(len(data)))
        pieces.append(data)
    return b"".join(pieces)
