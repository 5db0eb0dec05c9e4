"""The credit example's pipeline steps, run as the worker runs them: as subprocesses, with each
input staged under a temporary pfs root, using the command from the pipeline spec."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CREDIT = ROOT / "examples" / "credit"
ROWS = 2000


def _load_features() -> ModuleType:
    spec = importlib.util.spec_from_file_location("credit_features", CREDIT / "features.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


F = _load_features()


def generate(day: int, out: Path, rows: int = ROWS) -> Path:
    script = str(CREDIT / "generate.py")
    subprocess.run(
        [sys.executable, script, "--day", str(day), "--rows", str(rows), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return out / f"day-{day:03d}.csv"


def stage(root: Path, inputs: dict[str, list[Path]]) -> Path:
    """Copy files to ``<root>/<input name>/<file name>``, as the worker stages a datum."""
    for name, files in inputs.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for file in files:
            shutil.copyfile(file, root / name / file.name)
    return root


def run_step(
    pipeline: str, root: Path, *, check: bool = True, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run the pipeline spec's command from the repository root, as the local runner does."""
    spec = yaml.safe_load((CREDIT / f"{pipeline}.yaml").read_text())
    cmd = list(spec["transform"]["cmd"])
    assert cmd[0] == "python3"
    cmd[0] = sys.executable  # the venv's interpreter, which has the example's dependencies
    result = subprocess.run(
        cmd,
        cwd=ROOT,
        env={**os.environ, "TUSK_PFS_ROOT": str(root), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@dataclass(frozen=True)
class Run:
    raw: list[Path]
    customers: Path
    preprocess: Path  # the preprocess step's /pfs/out
    train: Path
    score: Path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    data = tmp_path_factory.mktemp("data")
    raw = [generate(1, data / "raw"), generate(2, data / "raw")]
    day3 = pd.read_csv(generate(3, data / "new", rows=300), dtype=str)
    customers = data / "customers" / "batch-003.csv"
    customers.parent.mkdir()
    day3.drop(columns="credit_limit").to_csv(customers, index=False)

    pre = stage(tmp_path_factory.mktemp("preprocess"), {"raw": raw})
    run_step("preprocess", pre)
    outputs = sorted((pre / "out").iterdir())
    tick = data / "2024-06-03T03:00:00Z"
    tick.write_text("")
    train = stage(tmp_path_factory.mktemp("train"), {"preprocess": outputs, "weekly": [tick]})
    run_step("train", train)
    score = stage(
        tmp_path_factory.mktemp("score"),
        {"train": sorted((train / "out").iterdir()), "customers": [customers]},
    )
    run_step("score", score)
    return Run(raw, customers, pre / "out", train / "out", score / "out")


def test_each_step_writes_its_outputs(run: Run) -> None:
    assert {p.name for p in run.preprocess.iterdir()} == {
        "train.csv",
        "validation.csv",
        "features.json",
        "report.json",
    }
    assert {p.name for p in run.train.iterdir()} == {"model.onnx", "metrics.json", "features.json"}
    assert [p.name for p in run.score.iterdir()] == ["batch-003.csv"]


def test_preprocess_reports_what_it_fixed(run: Run) -> None:
    report = json.loads((run.preprocess / "report.json").read_text())
    rows_in = sum(len(pd.read_csv(p, dtype=str)) for p in run.raw)
    assert report["rows_in"] == rows_in
    assert report["files"] == ["raw/day-001.csv", "raw/day-002.csv"]
    kept = report["rows_out"]["train"] + report["rows_out"]["validation"]
    assert 0.9 * rows_in < kept < rows_in
    fixed = report["fixed"]
    for key in (
        "duplicate_rows_dropped",
        "annual_income_parsed_from_text",
        "age_impossible",
        "utilisation_percent_to_fraction",
        "region_normalised",
        "rows_without_target_dropped",
    ):
        assert fixed[key] > 0, key


def test_splits_are_clean_disjoint_and_keyed_by_customer(run: Run) -> None:
    spec = json.loads((run.preprocess / "features.json").read_text())
    train = pd.read_csv(run.preprocess / "train.csv", dtype={F.ID: str})
    validation = pd.read_csv(run.preprocess / "validation.csv", dtype={F.ID: str})
    assert list(train.columns) == [F.ID, *spec["feature_names"], F.TARGET]
    assert not set(train[F.ID]) & set(validation[F.ID])
    assert all(F.split_of(i) == "validation" for i in validation[F.ID])
    assert 0.12 < len(validation) / (len(train) + len(validation)) < 0.28
    features = train[spec["feature_names"]].to_numpy()
    assert np.isfinite(features).all()
    # Standardised on the training rows.
    numeric = list(spec["scaling"])
    assert np.allclose(train[numeric].mean(), 0, atol=1e-6)
    assert np.allclose(train[numeric].std(ddof=0), 1, atol=1e-3)
    assert spec["categorical"]["region"] == sorted(spec["categorical"]["region"])
    assert "unknown" in spec["categorical"]["region"]  # missing values are a level


def test_winner_clearly_beats_the_mean_predictor(run: Run) -> None:
    metrics = json.loads((run.train / "metrics.json").read_text())
    candidates = metrics["candidates"]
    assert set(candidates) == {"ridge", "gradient_boosting", "mlp"}
    winner = metrics["winner"]
    assert candidates[winner]["rmse"] == min(c["rmse"] for c in candidates.values())
    assert candidates[winner]["rmse"] < 0.5 * metrics["baseline_mean"]["rmse"]
    assert candidates[winner]["r2"] > 0.8
    assert metrics["training_rows"] > 2500
    assert (
        metrics["feature_names"]
        == json.loads((run.train / "features.json").read_text())["feature_names"]
    )


def test_onnx_model_honours_the_contract_and_the_recorded_predictions(run: Run) -> None:
    metrics = json.loads((run.train / "metrics.json").read_text())
    names = metrics["feature_names"]
    session = ort.InferenceSession(
        str(run.train / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    (inp,) = session.get_inputs()
    (out,) = session.get_outputs()
    assert (inp.name, inp.type, inp.shape) == ("features", "tensor(float)", [None, len(names)])
    assert (out.name, out.type, out.shape) == ("credit_limit", "tensor(float)", [None, 1])
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["tusk.credit.feature_names"]) == names
    assert meta["tusk.credit.model"] == metrics["winner"]

    validation = pd.read_csv(run.preprocess / "validation.csv", dtype={F.ID: str})
    sample = metrics["sample"]
    rows = validation.iloc[: len(sample["prediction"])]
    assert rows[F.ID].tolist() == sample[F.ID]
    predicted = session.run(None, {"features": rows[names].to_numpy(np.float32)})[0]
    assert predicted.shape == (len(rows), 1)
    assert np.allclose(predicted[:, 0], sample["prediction"], rtol=1e-5, atol=0.01)


def test_score_matches_the_model_on_the_shared_encoding(run: Run) -> None:
    scores = pd.read_csv(run.score / "batch-003.csv", dtype={F.ID: str})
    assert list(scores.columns) == [F.ID, "predicted_credit_limit"]
    raw = pd.read_csv(run.customers, dtype=str)
    assert scores[F.ID].is_unique
    assert set(scores[F.ID]) == set(raw[F.ID])
    assert (scores["predicted_credit_limit"] > 0).all()

    spec = json.loads((run.train / "features.json").read_text())
    session = ort.InferenceSession(
        str(run.train / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    first = raw.drop_duplicates(F.ID).head(25)
    x = F.encode_records(first.to_dict("records"), spec)
    expected = session.run(None, {"features": x})[0][:, 0]
    got = scores.set_index(F.ID).loc[first[F.ID], "predicted_credit_limit"].to_numpy()
    assert np.allclose(got, expected, atol=0.01)


def test_same_inputs_give_identical_outputs(run: Run, tmp_path: Path) -> None:
    pre = stage(tmp_path / "preprocess", {"raw": run.raw})
    run_step("preprocess", pre)
    for name in ("train.csv", "validation.csv", "features.json", "report.json"):
        assert (pre / "out" / name).read_bytes() == (run.preprocess / name).read_bytes(), name

    train = stage(tmp_path / "train", {"preprocess": sorted((pre / "out").iterdir())})
    (train / "weekly").mkdir()
    run_step("train", train, PYTHONHASHSEED="12345")  # set iteration order must not leak
    for name in ("model.onnx", "metrics.json", "features.json"):
        assert (train / "out" / name).read_bytes() == (run.train / name).read_bytes(), name


def test_generator_is_deterministic_per_day(tmp_path: Path, run: Run) -> None:
    again = generate(1, tmp_path)
    assert again.read_bytes() == run.raw[0].read_bytes()
    day1 = pd.read_csv(run.raw[0], dtype=str)
    day2 = pd.read_csv(run.raw[1], dtype=str)
    shared = set(day1[F.ID]) & set(day2[F.ID])
    assert 0 < len(shared) < 0.1 * ROWS  # mostly new customers, a few returning


def test_missing_column_fails_with_a_clear_message(run: Run, tmp_path: Path) -> None:
    bad = tmp_path / "day-009.csv"
    pd.read_csv(run.raw[0], dtype=str).drop(columns="annual_income").to_csv(bad, index=False)
    root = stage(tmp_path / "pre", {"raw": [run.raw[1], bad]})
    result = run_step("preprocess", root, check=False)
    assert result.returncode == 2
    assert "day-009.csv: missing required column(s) annual_income" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (root / "out" / "train.csv").exists()

    root = stage(
        tmp_path / "score",
        {"train": sorted(run.train.iterdir()), "customers": [bad]},
    )
    result = run_step("score", root, check=False)
    assert result.returncode == 2
    assert "missing required column(s) annual_income" in result.stderr


def test_empty_or_unmounted_input_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "notes.txt").write_text("not data")
    result = run_step("preprocess", tmp_path, check=False)
    assert result.returncode == 2
    assert "no CSV files under" in result.stderr

    result = run_step("train", tmp_path / "nowhere", check=False)
    assert result.returncode == 2
    assert "input 'preprocess' is not mounted" in result.stderr


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("54000", 54000.0),
        ("$54,000", 54000.0),
        ("54,000.50", 54000.5),
        ("USD 54000", 54000.0),
        ("54.5k", 54500.0),
        (" £1,200 ", 1200.0),
    ],
)
def test_money_strings_parse(text: str, value: float) -> None:
    parsed, _ = F.parse_money(pd.Series([text]))
    assert parsed.iloc[0] == value


def test_garbage_money_is_missing() -> None:
    parsed, fixed = F.parse_money(pd.Series(["n/a", None, "12"]))
    assert parsed.isna().tolist() == [True, True, False]
    assert fixed == 0


def test_categoricals_normalise_to_canonical_levels() -> None:
    levels = F.CATEGORIES["employment_status"]
    values = pd.Series(["  Self-Employed", "PART TIME", "salaried ", None, "astronaut"])
    assert F.normalise_category(values, levels).tolist() == [
        "self_employed",
        "part_time",
        "salaried",
        "unknown",
        "unknown",
    ]


def test_clean_blanks_impossible_values_and_drops_duplicates() -> None:
    row = {
        F.ID: " c1 ",
        "age": "150",
        "annual_income": "$50,000",
        "employment_years": "40",
        "existing_debt": "1000",
        "num_credit_cards": "2",
        "late_payments_12m": "0",
        "credit_history_years": "5",
        "utilisation": "45",
        "home_ownership": "Rent",
        "employment_status": "salaried",
        "region": "North",
        "credit_limit": "5000",
        "_source": "a.csv",
    }
    raw = pd.DataFrame([row, {**row, "region": "NORTH "}], dtype=object)
    cleaned, fixes = F.clean(raw, with_target=True)
    assert len(cleaned) == 1
    (got,) = cleaned.to_dict("records")
    assert got[F.ID] == "C1"
    assert np.isnan(got["age"])
    assert got["annual_income"] == 50000
    assert got["utilisation"] == pytest.approx(0.45)
    assert got["region"] == "north"
    assert fixes["duplicate_rows_dropped"] == 1
