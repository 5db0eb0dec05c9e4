"""Turn raw customer rows into the model's input features, for real-time scoring.

    python examples/credit/encode.py --features features.json --customers new.csv --rows 3 \\
        --out encoded.csv

``features.json`` is the one the train pipeline writes next to ``model.onnx``; the output CSV
has one column per model feature (in the model's order), ready for ``tusk predict --csv``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import features as F


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--features", type=Path, required=True, help="features.json of a model")
    parser.add_argument("--customers", type=Path, required=True, help="a CSV of raw customers")
    parser.add_argument("--rows", type=int, default=5, help="how many customers to encode")
    parser.add_argument("--out", type=Path, required=True, help="the CSV to write")
    args = parser.parse_args()
    spec = json.loads(args.features.read_text())
    with args.customers.open(newline="") as f:
        records = [row for _, row in zip(range(args.rows), csv.DictReader(f), strict=False)]
    matrix = F.encode_records(records, spec)
    with args.out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(spec["feature_names"])
        writer.writerows([f"{v:.6g}" for v in row] for row in matrix.tolist())
    ids = ", ".join(str(r.get(F.ID)) for r in records)
    print(f"encoded {len(records)} customers ({ids}) into {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
