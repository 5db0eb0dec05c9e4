"""Pipeline step ``train``: fit candidate models, keep the best, export it to ONNX.

Reads ``/pfs/preprocess/`` (``train.csv``, ``validation.csv``, ``features.json``); the cron
input's ticks under ``/pfs/weekly/`` only trigger the run and are ignored. Writes to
``/pfs/out/``:

- ``model.onnx``: input ``features`` float32 [N, n_features] (order: ``feature_names`` in
  ``features.json``), output ``credit_limit`` float32 [N, 1], in currency units;
- ``features.json``: copied from preprocess, so the model travels with its encoding;
- ``metrics.json``: every candidate's validation RMSE / MAE / R², the winner, the baseline,
  and a sample of validation predictions made by the exported model.

Candidates learn the standardised logarithm of the limit: limits are multiplicative in income
and risk, the MLP needs a scaled target, and a limit can never come out negative. The way back
to currency (``exp(z * std + mean)``) is appended to the ONNX graph, so the served model
speaks currency.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import features as F
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pfs
from onnx import TensorProto, helper, numpy_helper
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.base import RegressorMixin
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.neural_network import MLPRegressor

log = logging.getLogger("credit.train")

SEED = 7
INPUT_NAME = "features"
OUTPUT_NAME = "credit_limit"
# Pinned so that the same model always exports to the same bytes, whatever skl2onnx defaults to.
OPSET = {"": 17, "ai.onnx.ml": 3}
SAMPLE_SIZE = 20
# ONNX computes in float32; a credit limit of 10,000 is then exact to about a cent.
MAX_ONNX_DIFFERENCE = 0.5


def candidates() -> dict[str, RegressorMixin]:
    return {
        "ridge": Ridge(alpha=1.0),
        "gradient_boosting": GradientBoostingRegressor(
            n_estimators=300, max_depth=3, learning_rate=0.05, subsample=0.8, random_state=SEED
        ),
        "mlp": MLPRegressor(
            hidden_layer_sizes=(32, 16), alpha=1e-2, max_iter=300, random_state=SEED
        ),
    }


def load_split(path: Path, names: list[str]) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    if not path.is_file():
        raise F.InputError(f"{path} is missing; is the preprocess output mounted?")
    table = pd.read_csv(path, dtype={F.ID: str})
    missing = [c for c in (F.ID, *names, F.TARGET) if c not in table.columns]
    if missing:
        raise F.InputError(f"{path}: missing column(s) {', '.join(missing)}")
    if table.empty:
        raise F.InputError(f"{path} has no rows")
    x = table[names].to_numpy(dtype=np.float32)
    y = table[F.TARGET].to_numpy(dtype=np.float64)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise F.InputError(f"{path}: non-finite values in features or target")
    return table[F.ID], x, y


def scores(y: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    return {
        "rmse": round(float(np.sqrt(mean_squared_error(y, predicted))), 4),
        "mae": round(float(mean_absolute_error(y, predicted)), 4),
        "r2": round(float(r2_score(y, predicted)), 6),
    }


def export(
    model: RegressorMixin, n_features: int, mean: float, std: float, meta: dict[str, str]
) -> bytes:
    """The fitted model as ONNX, with ``exp(z * std + mean)`` appended: currency units out."""
    onx = to_onnx(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        final_types=[("z", FloatTensorType([None, 1]))],
        target_opset=OPSET,
    )
    graph = onx.graph
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([std], dtype=np.float32), "target_std"),
            numpy_helper.from_array(np.array([mean], dtype=np.float32), "target_mean"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Mul", ["z", "target_std"], ["z_scaled"], name="unscale_mul"),
            helper.make_node("Add", ["z_scaled", "target_mean"], ["log_limit"], name="unscale_add"),
            helper.make_node("Exp", ["log_limit"], [OUTPUT_NAME], name="unlog"),
        ]
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [None, 1]))
    graph.name = "credit_limit"
    # skl2onnx lists the opsets in set order, which varies between runs: sort for stable bytes.
    opsets = sorted((o.domain, o.version) for o in onx.opset_import)
    del onx.opset_import[:]
    onx.opset_import.extend(helper.make_opsetid(domain, version) for domain, version in opsets)
    onx.doc_string = "tusk credit-limit example: predicted credit limit in currency units"
    for key, value in meta.items():
        onx.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    onnx.checker.check_model(onx)
    return onx.SerializeToString()


def onnx_predict(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    inputs = [(i.name, i.type, i.shape) for i in session.get_inputs()]
    outputs = [(o.name, o.type) for o in session.get_outputs()]
    if [i[0] for i in inputs] != [INPUT_NAME] or [o[0] for o in outputs] != [OUTPUT_NAME]:
        raise RuntimeError(f"exported model has inputs {inputs} and outputs {outputs}")
    return session.run([OUTPUT_NAME], {INPUT_NAME: x})[0].reshape(-1)


def main() -> None:
    started = time.perf_counter()
    ticks = sorted(p.name for p in (pfs.root() / "weekly").glob("*"))
    if ticks:
        log.info("weekly cron input present (latest tick %s); it only triggers the run", ticks[-1])
    source = pfs.input_dir("preprocess")
    spec_path = source / "features.json"
    if not spec_path.is_file():
        raise F.InputError(f"{spec_path} is missing; is the preprocess output mounted?")
    spec = json.loads(spec_path.read_text())
    names: list[str] = spec["feature_names"]
    _, x_train, y_train = load_split(source / "train.csv", names)
    val_ids, x_val, y_val = load_split(source / "validation.csv", names)
    log.info(
        "training on %d rows, validating on %d, %d features", len(y_train), len(y_val), len(names)
    )

    log_y = np.log(y_train)
    mean, std = float(log_y.mean()), float(log_y.std() or 1.0)
    baseline = scores(y_val, np.full_like(y_val, y_train.mean()))
    log.info("baseline (predict the training mean): rmse %.1f", baseline["rmse"])

    results: dict[str, dict[str, Any]] = {}
    fitted: dict[str, RegressorMixin] = {}
    for name, model in candidates().items():
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x_train, (log_y - mean) / std)
        predicted = np.exp(model.predict(x_val) * std + mean)
        results[name] = scores(y_val, predicted)
        fitted[name] = model
        log.info("%s: %s, fitted in %.2fs", name, results[name], time.perf_counter() - t0)

    winner = min(results, key=lambda n: (results[n]["rmse"], n))
    log.info("winner: %s (validation rmse %.1f)", winner, results[winner]["rmse"])

    model_bytes = export(
        fitted[winner],
        len(names),
        mean,
        std,
        {
            "tusk.credit.model": winner,
            "tusk.credit.feature_names": json.dumps(names),
            "tusk.credit.features_format": spec["format"],
        },
    )
    expected = np.exp(fitted[winner].predict(x_val) * std + mean)
    got = onnx_predict(model_bytes, x_val)
    difference = float(np.max(np.abs(got - expected)))
    if not difference <= MAX_ONNX_DIFFERENCE:
        raise RuntimeError(
            f"ONNX export of {winner} disagrees with scikit-learn by up to {difference:.4f}"
        )
    log.info("onnxruntime agrees with scikit-learn: max difference %.6f", difference)

    out = pfs.output_dir()
    (out / "model.onnx").write_bytes(model_bytes)
    shutil.copyfile(spec_path, out / "features.json")
    metrics = {
        "winner": winner,
        "metric": "validation rmse",
        "candidates": results,
        "baseline_mean": baseline,
        "training_rows": len(y_train),
        "validation_rows": len(y_val),
        "target": {"name": F.TARGET, "mean": mean, "std": std},
        "model": {
            "file": "model.onnx",
            "input": {"name": INPUT_NAME, "dtype": "float32", "shape": [None, len(names)]},
            "output": {"name": OUTPUT_NAME, "dtype": "float32", "shape": [None, 1]},
            "opset": OPSET,
            "onnx_max_difference": round(difference, 6),
        },
        "feature_names": names,
        # What model.onnx predicts for the first rows of validation.csv, to check a deployment.
        "sample": {
            F.ID: val_ids.iloc[:SAMPLE_SIZE].tolist(),
            "prediction": [round(float(v), 4) for v in got[:SAMPLE_SIZE]],
        },
    }
    pfs.write_json(out / "metrics.json", metrics)
    log.info(
        "wrote model.onnx (%d bytes), features.json, metrics.json in %.2fs",
        len(model_bytes),
        time.perf_counter() - started,
    )


if __name__ == "__main__":
    pfs.run("train", main)
