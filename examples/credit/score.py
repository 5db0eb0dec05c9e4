"""Pipeline step ``score``: batch-score new customers with the trained ONNX model.

Reads ``/pfs/train/model.onnx`` and ``/pfs/train/features.json``, and the customers' CSVs under
``/pfs/customers/`` (with glob ``/*`` that is one file, or one top-level directory, per datum).
For each input ``customers/<path>.csv`` writes ``/pfs/out/<path>.csv`` with ``customer_id`` and
``predicted_credit_limit``. Output names follow input names because two datums must never write
the same output path.

Customers are cleaned and encoded exactly as in training (``features.py``); a customer listed
twice in one file is scored once.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import features as F
import numpy as np
import onnxruntime as ort
import pandas as pd
import pfs

log = logging.getLogger("credit.score")

INPUT_NAME = "features"
OUTPUT_NAME = "credit_limit"


def load_model(model_dir: Path) -> tuple[ort.InferenceSession, dict]:
    model_path, spec_path = model_dir / "model.onnx", model_dir / "features.json"
    for path in (model_path, spec_path):
        if not path.is_file():
            raise F.InputError(f"{path} is missing; is the train output mounted?")
    spec = json.loads(spec_path.read_text())
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad models
        raise F.InputError(f"{model_path}: cannot load the model ({exc})") from exc
    width = session.get_inputs()[0].shape[-1]
    if width != len(spec["feature_names"]):
        raise F.InputError(
            f"{model_path} expects {width} features but {spec_path} describes "
            f"{len(spec['feature_names'])}; they come from different training runs"
        )
    return session, spec


def main() -> None:
    started = time.perf_counter()
    session, spec = load_model(pfs.input_dir("train"))
    customers = pfs.input_dir("customers")
    files = pfs.csv_files(customers)
    if not files:
        log.warning("no CSV file in this datum under %s: nothing to score", customers)
        return
    out = pfs.output_dir()
    for path in files:
        raw = F.read_csvs([path], F.INPUT_COLUMNS)
        cleaned, fixes = F.clean(raw, with_target=False)
        if cleaned.empty:
            raise F.InputError(f"{path}: no usable customer rows")
        x, _ = F.encode(cleaned, spec)
        predicted = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0].reshape(-1)
        target = out / path.relative_to(customers)
        target.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(
            {F.ID: cleaned[F.ID], "predicted_credit_limit": np.round(predicted, 2)}
        ).to_csv(target, index=False, float_format="%.2f", lineterminator="\n")
        log.info(
            "%s: %d rows read, %d scored (%d duplicates dropped) → %s",
            path.relative_to(pfs.root()),
            len(raw),
            len(cleaned),
            fixes["duplicate_rows_dropped"],
            target.relative_to(pfs.root()),
        )
    log.info("scored %d file(s) in %.2fs", len(files), time.perf_counter() - started)


if __name__ == "__main__":
    pfs.run("score", main)
