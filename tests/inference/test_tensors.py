"""Decoding OIP v2 requests and encoding answers, for every datatype, in JSON and binary."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import pytest

from tusk.errors import InvalidArgument
from tusk_inference.domain.tensors import (
    NUMPY_TYPES,
    RequestedOutput,
    TensorSpec,
    decode_request,
    encode_response,
)

SAMPLES: dict[str, list[list[Any]]] = {
    "BOOL": [[True, False], [False, True]],
    "UINT8": [[0, 255], [7, 8]],
    "UINT16": [[0, 65535], [7, 8]],
    "UINT32": [[0, 4294967295], [7, 8]],
    "UINT64": [[0, 2**64 - 1], [7, 8]],
    "INT8": [[-128, 127], [7, -8]],
    "INT16": [[-32768, 32767], [7, -8]],
    "INT32": [[-(2**31), 2**31 - 1], [7, -8]],
    "INT64": [[-(2**63), 2**63 - 1], [7, -8]],
    "FP16": [[0.5, -2.0], [1024.0, 0.25]],
    "FP32": [[0.1, -2.5], [3.0, 1e10]],
    "FP64": [[0.1, -2.5], [3.0, 1e300]],
    "BYTES": [["a", "héllo"], ["", "x y"]],
}


def spec(datatype: str, shape: tuple[int, ...] = (-1, 2)) -> dict[str, TensorSpec]:
    return {"input": TensorSpec("input", datatype, shape)}


def outputs(datatype: str) -> list[TensorSpec]:
    return [TensorSpec("output", datatype, (-1, 2))]


def decode(
    body: dict[str, Any] | bytes,
    datatype: str = "FP32",
    header: str | None = None,
    shape: tuple[int, ...] = (-1, 2),
) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return decode_request(raw, header, "m", spec(datatype, shape), outputs(datatype))


def tensor(
    datatype: str, data: Any, shape: list[int] | None = None, **extra: Any
) -> dict[str, Any]:
    return {"name": "input", "datatype": datatype, "shape": shape or [2, 2], "data": data, **extra}


@pytest.mark.parametrize("datatype", list(SAMPLES))
@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_every_datatype_decodes_flat_or_nested(datatype: str, layout: str) -> None:
    rows = SAMPLES[datatype]
    data = rows if layout == "nested" else [v for row in rows for v in row]
    request = decode({"inputs": [tensor(datatype, data)]}, datatype)
    array = request.inputs["input"]
    assert array.shape == (2, 2)
    assert array.dtype == NUMPY_TYPES[datatype]
    expected = np.array(rows, dtype=NUMPY_TYPES[datatype])
    assert array.tolist() == expected.tolist()
    assert request.rows == 2


@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_every_datatype_decodes_from_binary(datatype: str) -> None:
    rows = SAMPLES[datatype]
    if datatype == "BYTES":
        blob = b"".join(
            struct.pack("<I", len(v.encode())) + v.encode() for row in rows for v in row
        )
    else:
        blob = np.array(rows, dtype=NUMPY_TYPES[datatype]).tobytes()
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": datatype,
                    "shape": [2, 2],
                    "parameters": {"binary_data_size": len(blob)},
                }
            ]
        }
    ).encode()
    request = decode(head + blob, datatype, header=str(len(head)))
    assert request.inputs["input"].tolist() == np.array(rows, dtype=NUMPY_TYPES[datatype]).tolist()


@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_every_datatype_encodes_as_json_and_binary(datatype: str) -> None:
    array = np.array(SAMPLES[datatype], dtype=NUMPY_TYPES[datatype])
    specs = {"output": TensorSpec("output", datatype, (-1, 2))}
    body, length = encode_response(
        '"model_name":"m"', "r1", [RequestedOutput("output", False)], specs, {"output": array}
    )
    assert length is None
    document = json.loads(body)
    assert document["id"] == "r1"
    [output] = document["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("output", datatype, [2, 2])
    flat = [v for row in SAMPLES[datatype] for v in row]
    if datatype.startswith("FP") and datatype != "FP64":
        assert np.allclose(output["data"], np.array(flat, dtype=NUMPY_TYPES[datatype]))
    else:
        assert output["data"] == flat

    body, length = encode_response(
        '"model_name":"m"', None, [RequestedOutput("output", True)], specs, {"output": array}
    )
    assert length is not None
    document = json.loads(body[:length])
    size = document["outputs"][0]["parameters"]["binary_data_size"]
    assert "data" not in document["outputs"][0]
    assert len(body) - length == size


def test_request_id_outputs_and_parameters() -> None:
    specs = {"input": TensorSpec("input", "FP32", (-1, 2))}
    outs = [TensorSpec("a", "FP32", (-1, 2)), TensorSpec("b", "INT64", (-1,))]
    body = {
        "id": "abc",
        "parameters": {"binary_data_output": True},
        "inputs": [tensor("FP32", [[1, 2], [3, 4]])],
        "outputs": [{"name": "b", "parameters": {"binary_data": False}}],
    }
    request = decode_request(json.dumps(body).encode(), None, "m", specs, outs)
    assert request.id == "abc"
    assert [(o.name, o.binary) for o in request.outputs] == [("b", False)]
    body.pop("outputs")
    request = decode_request(json.dumps(body).encode(), None, "m", specs, outs)
    assert [(o.name, o.binary) for o in request.outputs] == [("a", True), ("b", True)]


def test_integers_are_widened_to_floats_but_not_the_other_way() -> None:
    assert decode({"inputs": [tensor("FP32", [[1, 2], [3, 4]])]}).inputs["input"].dtype == "f4"
    with pytest.raises(InvalidArgument, match="integer"):
        decode({"inputs": [tensor("INT32", [[1.5, 2], [3, 4]])]}, "INT32")
    with pytest.raises(InvalidArgument, match="true/false"):
        decode({"inputs": [tensor("BOOL", [[1, 0], [0, 1]])]}, "BOOL")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        ({"inputs": []}, "non-empty list"),
        ({"inputs": [tensor("FP32", [[1, 2], [3, 4]], name="other")]}, "has no input 'other'"),
        (
            {"inputs": [tensor("FP64", [[1, 2], [3, 4]])]},
            "has datatype FP64 but model 'm' expects FP32",
        ),
        ({"inputs": [tensor("FLOAT", [[1, 2], [3, 4]])]}, "unsupported datatype 'FLOAT'"),
        ({"inputs": [tensor("FP32", [[1, 2, 3], [3, 4, 5]], [2, 3])]}, "expects [-1, 2]"),
        ({"inputs": [tensor("FP32", [1, 2, 3, 4], [2])]}, "expects [-1, 2]"),
        ({"inputs": [tensor("FP32", [[1, 2], [3]])]}, "ragged"),
        ({"inputs": [tensor("FP32", [1, 2, 3])]}, "needs 4 values, got 3"),
        ({"inputs": [tensor("FP32", [["a", "b"], ["c", "d"]])]}, "number"),
        ({"inputs": [tensor("FP32", [[1, 2], [3, 4]], [-1, 2])]}, "non-negative integers"),
        ({"inputs": [{"name": "input", "datatype": "FP32", "shape": [2, 2]}]}, "has no 'data'"),
        (
            {"inputs": [tensor("FP32", [[1, 2], [3, 4]]), tensor("FP32", [[1, 2], [3, 4]])]},
            "given twice",
        ),
        ({"id": 7, "inputs": [tensor("FP32", [[1, 2], [3, 4]])]}, "'id' must be a string"),
        (
            {"inputs": [tensor("FP32", [[1, 2], [3, 4]])], "outputs": [{"name": "nope"}]},
            "has no output 'nope'",
        ),
    ],
)
def test_malformed_requests_say_what_is_wrong(body: dict[str, Any] | bytes, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        decode(body)
    assert fragment in caught.value.message


def test_missing_input_names_it() -> None:
    specs = {"a": TensorSpec("a", "FP32", (-1,)), "b": TensorSpec("b", "FP32", (-1,))}
    body = {"inputs": [{"name": "a", "datatype": "FP32", "shape": [1], "data": [1]}]}
    with pytest.raises(InvalidArgument, match=r"missing input.*'b'"):
        decode_request(json.dumps(body).encode(), None, "m", specs, outputs("FP32"))


def test_out_of_range_integers_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="out of the range of UINT8"):
        decode({"inputs": [tensor("UINT8", [[0, 256], [1, 2]])]}, "UINT8")
    with pytest.raises(InvalidArgument, match="out of the range of INT8"):
        decode({"inputs": [tensor("INT8", [[-129, 0], [1, 2]])]}, "INT8")


def test_binary_sizes_must_add_up() -> None:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "datatype": "FP32",
                    "shape": [2, 2],
                    "parameters": {"binary_data_size": 16},
                }
            ]
        }
    ).encode()
    blob = np.zeros(4, dtype=np.float32).tobytes()
    with pytest.raises(InvalidArgument, match="bytes after the inputs"):
        decode(head + blob + b"xx", header=str(len(head)))
    with pytest.raises(InvalidArgument, match="only 8 bytes"):
        decode(head + blob[:8], header=str(len(head)))
    with pytest.raises(InvalidArgument, match="Inference-Header-Content-Length"):
        decode(head + blob, header="9999")


def test_empty_batches_are_fine() -> None:
    request = decode({"inputs": [tensor("INT64", [], [0, 2])]}, "INT64")
    assert request.inputs["input"].shape == (0, 2)
    assert request.rows == 0


def test_fixed_dimensions_are_enforced() -> None:
    with pytest.raises(InvalidArgument, match=r"expects \[1, 3\]"):
        decode({"inputs": [tensor("FP32", [[1, 2, 3], [4, 5, 6]], [2, 3])]}, shape=(1, 3))
    ok = decode({"inputs": [tensor("FP32", [[1, 2, 3]], [1, 3])]}, shape=(1, 3))
    assert ok.inputs["input"].shape == (1, 3)


def test_null_reads_as_nan_for_floating_point_inputs() -> None:
    array = decode({"inputs": [tensor("FP32", [[None, 1], [2, 3]])]}).inputs["input"]
    assert np.isnan(array[0, 0])
    assert array[1].tolist() == [2.0, 3.0]
    with pytest.raises(InvalidArgument, match="integer"):
        decode({"inputs": [tensor("INT64", [[None, 1], [2, 3]])]}, "INT64")
