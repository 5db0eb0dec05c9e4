"""Pipeline step ``preprocess``: raw customer CSVs → clean, encoded train/validation sets.

Reads every CSV under ``/pfs/raw/`` (the whole repo is one datum), writes to ``/pfs/out/``:

- ``train.csv``, ``validation.csv``: ``customer_id``, the encoded features, ``credit_limit``;
  a customer is in the same split on every day (the split hashes the id);
- ``features.json``: how to encode a raw customer (see ``features.py``), fitted on ``train``;
- ``report.json``: rows in and out, what was fixed.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import features as F
import numpy as np
import pandas as pd
import pfs

log = logging.getLogger("credit.preprocess")


def _write_split(path: Path, ids: pd.Series, x: np.ndarray, y: pd.Series, names: list[str]) -> None:
    table = pd.DataFrame(x.astype(np.float64), columns=names)
    table.insert(0, F.ID, ids.to_numpy())
    table[F.TARGET] = y.to_numpy()
    table.to_csv(path, index=False, float_format="%.9g", lineterminator="\n")


def main() -> None:
    started = time.perf_counter()
    files = pfs.csv_files(pfs.input_dir("raw"))
    if not files:
        raise F.InputError(f"no CSV files under {pfs.root() / 'raw'}")
    raw = F.read_csvs(files, F.TRAINING_COLUMNS)
    log.info("read %d rows from %d file(s)", len(raw), len(files))

    cleaned, fixes = F.clean(raw, with_target=True)
    split = cleaned[F.ID].map(F.split_of)
    train, validation = cleaned[split == "train"], cleaned[split == "validation"]
    if len(validation) == 0:
        raise F.InputError(f"only {len(cleaned)} usable rows: too few for a validation split")
    log.info(
        "cleaned: %d rows kept, %d train / %d validation", len(cleaned), len(train), len(validation)
    )

    spec = F.fit(train)
    out = pfs.output_dir()
    clipped: dict[str, int] = {}
    for name, part in (("train", train), ("validation", validation)):
        x, part_clipped = F.encode(part, spec)
        clipped = {c: clipped.get(c, 0) + n for c, n in part_clipped.items()}
        _write_split(out / f"{name}.csv", part[F.ID], x, part[F.TARGET], spec["feature_names"])
    pfs.write_json(out / "features.json", spec)

    report = {
        "files": [str(p.relative_to(pfs.root())) for p in files],
        "rows_in": len(raw),
        "rows_out": {"train": len(train), "validation": len(validation)},
        "features": len(spec["feature_names"]),
        "fixed": {**fixes, "values_clipped": clipped},
    }
    pfs.write_json(out / "report.json", report)
    log.info("fixed: %s", {k: v for k, v in fixes.items() if v and not isinstance(v, dict)})
    log.info(
        "wrote train.csv, validation.csv, features.json (%d features), report.json in %.2fs",
        len(spec["feature_names"]),
        time.perf_counter() - started,
    )


if __name__ == "__main__":
    pfs.run("preprocess", main)
