"""Tiny ONNX models built in the tests with the ``onnx`` helper API."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 9  # what onnxruntime reads, whatever the installed onnx would write

# OIP datatype -> ONNX element type
ELEMENT_TYPES = {
    "BOOL": TensorProto.BOOL,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}


def _model(graph: object, doc: str = "") -> bytes:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="tusk-tests",
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    return bytes(model.SerializeToString())


def affine(scale: float = 2.0, bias: float = 1.0, width: int = 4) -> bytes:
    """``y = x * scale + bias``: x FP32 [N, width] → y FP32 [N, width]."""
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "scale"], ["scaled"]),
            helper.make_node("Add", ["scaled", "bias"], ["y"]),
        ],
        "affine",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width])],
        [
            numpy_helper.from_array(np.array(scale, dtype=np.float32), "scale"),
            numpy_helper.from_array(np.array(bias, dtype=np.float32), "bias"),
        ],
    )
    return _model(graph, f"y = x * {scale} + {bias}")


def identity(datatype: str, shape: tuple[int | str, ...] = ("N", 2)) -> bytes:
    """``output = input`` for one OIP datatype."""
    element = ELEMENT_TYPES[datatype]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])],
        f"identity_{datatype.lower()}",
        [helper.make_tensor_value_info("input", element, list(shape))],
        [helper.make_tensor_value_info("output", element, list(shape))],
    )
    return _model(graph)


def two_outputs() -> bytes:
    """a FP32 [N, 2], b INT64 [N, 2] → sum FP32 [N, 2] (a + b), neg INT64 [N, 2] (-b)."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["b"], ["b_float"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["a", "b_float"], ["sum"]),
            helper.make_node("Neg", ["b"], ["neg"]),
        ],
        "two_outputs",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 2]),
            helper.make_tensor_value_info("b", TensorProto.INT64, ["N", 2]),
        ],
        [
            helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["N", 2]),
            helper.make_tensor_value_info("neg", TensorProto.INT64, ["N", 2]),
        ],
    )
    return _model(graph)


def slow(width: int = 256, depth: int = 48) -> bytes:
    """Compute-bound: ``depth`` chained MatMuls by one ``width``² matrix, then the row sum.
    x FP32 [N, width] → y FP32 [N, 1]. Batching pays: a row alone is a matrix-vector
    product, many rows make a matrix product."""
    rng = np.random.default_rng(7)
    weights = (np.eye(width) + rng.normal(0, 0.01, (width, width))).astype(np.float32)
    nodes = []
    previous = "x"
    for i in range(depth):
        nodes.append(helper.make_node("MatMul", [previous, "w"], [f"h{i}"]))
        previous = f"h{i}"
    nodes.append(helper.make_node("ReduceSum", [previous, "axes"], ["y"], keepdims=1))
    graph = helper.make_graph(
        nodes,
        "slow",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        [
            numpy_helper.from_array(weights, "w"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
        ],
    )
    return _model(graph)


def fixed_shape() -> bytes:
    """x FP32 [1, 3] → y FP32 [1, 3], y = x + 1 (a model that cannot be batched)."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "one"], ["y"])],
        "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
        [numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one")],
    )
    return _model(graph)


CORRUPT = b"\x08\x07this is not an ONNX model\xff\xfe"
