"""Turning raw customer rows into the model's input vector, shared by preprocess, score and tests.

Two stages, so that serving does exactly what training did:

- ``clean`` is stateless: it fixes types and obvious impossibilities (currency strings, casing,
  impossible ages, percentages given for fractions) and drops duplicate rows.
- ``fit`` learns the parameters (clip bounds, medians, means and standard deviations, category
  levels) from the training rows only; ``encode`` applies them. ``fit`` returns a plain dict,
  written as ``features.json``, that holds everything needed to encode a new customer.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FORMAT = "tusk.credit.features/v1"

ID = "customer_id"
TARGET = "credit_limit"

# Raw numeric columns, with the values that are possible at all; anything outside is an entry
# error and becomes missing (then imputed), not an outlier to clip.
NUMERIC_RANGES: dict[str, tuple[float, float]] = {
    "age": (18, 100),
    "annual_income": (1, 10_000_000),
    "employment_years": (0, 70),
    "existing_debt": (0, 10_000_000),
    "num_credit_cards": (0, 40),
    "late_payments_12m": (0, 36),
    "credit_history_years": (0, 80),
    "utilisation": (0, 1.5),
}
MONEY_COLUMNS = ("annual_income", "existing_debt")
NUMERIC = tuple(NUMERIC_RANGES)
DERIVED = ("log_income", "debt_to_income")

# Canonical levels; any other spelling that does not normalise to one of these is "unknown".
CATEGORIES: dict[str, tuple[str, ...]] = {
    "home_ownership": ("own", "mortgage", "rent", "other"),
    "employment_status": ("salaried", "self_employed", "part_time", "unemployed", "retired"),
    "region": ("north", "south", "east", "west", "central"),
}
SYNONYMS = {"owner": "own", "owned": "own", "renting": "rent", "renter": "rent"}
UNKNOWN = "unknown"
CATEGORICAL = tuple(CATEGORIES)

INPUT_COLUMNS = (ID, *NUMERIC, *CATEGORICAL)  # what scoring needs
TRAINING_COLUMNS = (*INPUT_COLUMNS, TARGET)  # what training needs

CLIP_QUANTILES = (0.005, 0.995)
VALIDATION_PERCENT = 20


class InputError(ValueError):
    """The input data cannot be used; the message says which file and what is wrong."""


def read_csvs(paths: Iterable[Path], required: Iterable[str]) -> pd.DataFrame:
    """Read raw CSVs as strings (parsing is ``clean``'s job), checking the required columns.

    Column names are matched case- and whitespace-insensitively. Adds ``_source`` (file name).
    """
    required = tuple(required)
    frames = []
    for path in paths:
        try:
            frame = pd.read_csv(path, dtype=str)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: not a readable CSV file ({exc})") from exc
        frame.columns = [str(c).strip().lower() for c in frame.columns]
        missing = [c for c in required if c not in frame.columns]
        if missing:
            raise InputError(
                f"{path}: missing required column(s) {', '.join(missing)}; "
                f"expected at least {', '.join(required)}"
            )
        frame = frame[list(required)].copy()
        frame["_source"] = str(path)
        frames.append(frame)
    if not frames:
        raise InputError("no CSV files to read")
    return pd.concat(frames, ignore_index=True)


_MONEY_JUNK = re.compile(r"[\s,$€£]|usd|eur|gbp", re.IGNORECASE)


def parse_money(values: pd.Series) -> tuple[pd.Series, int]:
    """Parse amounts written as numbers or strings like "$54,000", "USD 54000", "54.5k".

    Returns the parsed values and how many needed more than a plain number parse.
    """
    text = values.astype("string").str.strip()
    plain = pd.to_numeric(text, errors="coerce")
    stripped = text.str.replace(_MONEY_JUNK, "", regex=True).str.lower()
    thousands = stripped.str.endswith("k", na=False)
    stripped = stripped.str.removesuffix("k")
    parsed = pd.to_numeric(stripped, errors="coerce").astype("float64")
    parsed = parsed.where(~thousands, parsed * 1000)
    fixed = int((plain.isna() & parsed.notna()).sum())
    return parsed.astype("float64"), fixed


def normalise_category(values: pd.Series, levels: tuple[str, ...]) -> pd.Series:
    text = values.astype("string").str.strip().str.lower()
    text = text.str.replace(r"[\s\-]+", "_", regex=True)
    text = text.replace(SYNONYMS)
    text = text.str.replace("_", "", regex=False).map(
        {lvl.replace("_", ""): lvl for lvl in levels}, na_action="ignore"
    )
    return text.fillna(UNKNOWN).astype("object")


def clean(raw: pd.DataFrame, *, with_target: bool) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Fix types and impossible values; drop unusable and duplicate rows.

    Returns the cleaned frame (numeric columns float64 with NaN for missing, categoricals
    canonical strings) and counts of what was fixed, for the report.
    """
    fixes: dict[str, Any] = {}
    df = pd.DataFrame(index=raw.index)
    ids = raw[ID].astype("string").str.strip().str.upper()
    df[ID] = ids.astype("object")

    for col in NUMERIC:
        if col in MONEY_COLUMNS:
            values, from_strings = parse_money(raw[col])
            fixes[f"{col}_parsed_from_text"] = from_strings
        else:
            values = pd.to_numeric(raw[col].astype("string").str.strip(), errors="coerce")
            values = values.astype("float64")
        if col == "utilisation":
            # Some systems export utilisation as a percentage: 45 means 0.45.
            percent = (values > NUMERIC_RANGES[col][1]) & (values <= 150)
            values = values.where(~percent, values / 100)
            fixes["utilisation_percent_to_fraction"] = int(percent.sum())
        low, high = NUMERIC_RANGES[col]
        impossible = values.notna() & ((values < low) | (values > high))
        fixes[f"{col}_impossible"] = int(impossible.sum())
        df[col] = values.where(~impossible)

    # Employment cannot have started before the age of 14.
    too_long = df["employment_years"] > (df["age"] - 14)
    fixes["employment_years_impossible"] += int(too_long.sum())
    df.loc[too_long, "employment_years"] = np.nan

    for col, levels in CATEGORIES.items():
        original = raw[col].astype("string")
        df[col] = normalise_category(original, levels)
        changed = original.notna() & (original != df[col].astype("string"))
        fixes[f"{col}_normalised"] = int(changed.fillna(False).sum())

    if with_target:
        target, _ = parse_money(raw[TARGET])
        df[TARGET] = target

    keep = df[ID].notna() & (df[ID] != "")
    fixes["rows_without_id_dropped"] = int((~keep).sum())
    if with_target:
        has_target = df[TARGET].notna() & (df[TARGET] > 0)
        fixes["rows_without_target_dropped"] = int((keep & ~has_target).sum())
        keep &= has_target
    df = df[keep]

    # Exact copies after normalisation, and the same customer twice in one file.
    df["_source"] = raw.loc[df.index, "_source"] if "_source" in raw else ""
    before = len(df)
    df = df.drop_duplicates().drop_duplicates(subset=["_source", ID], keep="first")
    fixes["duplicate_rows_dropped"] = before - len(df)
    fixes["missing_values"] = {c: int(df[c].isna().sum()) for c in NUMERIC}
    return df.drop(columns="_source").reset_index(drop=True), fixes


def split_of(customer_id: str) -> str:
    """``train`` or ``validation``, from a hash of the id: stable across days and runs."""
    bucket = int.from_bytes(hashlib.sha256(customer_id.encode()).digest()[:8], "big") % 100
    return "validation" if bucket < VALIDATION_PERCENT else "train"


def _derive(numeric: pd.DataFrame) -> pd.DataFrame:
    out = numeric.copy()
    out["log_income"] = np.log(numeric["annual_income"])
    out["debt_to_income"] = numeric["existing_debt"] / numeric["annual_income"]
    return out


def _clip_impute(df: pd.DataFrame, spec: Mapping[str, Any]) -> tuple[pd.DataFrame, dict[str, int]]:
    numeric = pd.DataFrame(index=df.index)
    clipped = {}
    for col in NUMERIC:
        params = spec["numeric"][col]
        low, high = params["clip"]
        values = df[col].astype("float64")
        clipped[col] = int(((values < low) | (values > high)).sum())
        numeric[col] = values.clip(low, high).fillna(params["median"])
    return _derive(numeric), clipped


def fit(train: pd.DataFrame) -> dict[str, Any]:
    """Learn the encoding from cleaned training rows. The result is JSON-serialisable."""
    if train.empty:
        raise InputError("no training rows left after cleaning")
    spec: dict[str, Any] = {"format": FORMAT, "id": ID, "target": TARGET, "numeric": {}}
    for col in NUMERIC:
        values = train[col].dropna()
        if values.empty:
            raise InputError(f"column {col} has no usable value in the training rows")
        low, high = np.quantile(values, CLIP_QUANTILES)
        spec["numeric"][col] = {
            "clip": [float(low), float(high)],
            "median": float(np.median(values.clip(low, high))),
        }
    numeric, _ = _clip_impute(train, spec)
    spec["derived"] = list(DERIVED)
    spec["scaling"] = {
        col: {"mean": float(numeric[col].mean()), "std": float(numeric[col].std(ddof=0) or 1.0)}
        for col in numeric.columns
    }
    spec["categorical"] = {col: sorted(set(train[col])) for col in CATEGORICAL}
    spec["feature_names"] = [*numeric.columns] + [
        f"{col}={level}" for col, levels in spec["categorical"].items() for level in levels
    ]
    spec["input_columns"] = list(INPUT_COLUMNS)
    return spec


def encode(df: pd.DataFrame, spec: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, int]]:
    """Cleaned rows → float32 matrix in ``spec["feature_names"]`` order.

    Unknown categories encode as all zeros. Also returns how many values were clipped per column.
    """
    if spec.get("format") != FORMAT:
        raise InputError(f"features spec has format {spec.get('format')!r}, expected {FORMAT!r}")
    numeric, clipped = _clip_impute(df, spec)
    columns = {}
    for col, params in spec["scaling"].items():
        columns[col] = (numeric[col] - params["mean"]) / params["std"]
    for col, levels in spec["categorical"].items():
        for level in levels:
            columns[f"{col}={level}"] = (df[col] == level).astype("float64")
    matrix = pd.DataFrame(columns, index=df.index)[spec["feature_names"]]
    values = matrix.to_numpy(dtype=np.float32)
    if not np.isfinite(values).all():
        raise InputError("encoding produced non-finite values; check the features spec")
    return values, clipped


def encode_records(records: Iterable[Mapping[str, Any]], spec: Mapping[str, Any]) -> np.ndarray:
    """Raw customers as dicts (e.g. from a JSON request) → the model's input matrix.

    Rows are not deduplicated or dropped, so row ``i`` of the result is record ``i``.
    """
    raw = pd.DataFrame(list(records), dtype="object")
    for col in INPUT_COLUMNS:
        if col not in raw:
            raw[col] = math.nan if col != ID else "?"
    cleaned = _clean_keep_rows(raw)
    values, _ = encode(cleaned, spec)
    return values


def _clean_keep_rows(raw: pd.DataFrame) -> pd.DataFrame:
    raw = raw.copy()
    raw[ID] = raw[ID].fillna("?").astype(str).replace("", "?")
    raw["_source"] = list(range(len(raw)))  # every row its own source: no deduplication
    cleaned, _ = clean(raw, with_target=False)
    return cleaned
