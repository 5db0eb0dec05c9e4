"""Pachyderm's housing-prices regression, written for tusk to the same command line:

    python regression.py --input /pfs/housing_data/ --target-col MEDV --output /pfs/out/

For each CSV file under ``--input`` (or the one file it names), ``<name>``, it writes to
``--output``: ``<name>_pairplot.png`` (every column against every other),
``<name>_corr_matrix.png`` (their correlations), ``<name>_cv_reg_output.png`` (the learning
curve of a random forest regressor, cross-validated) and ``<name>_final_model.sav`` (that
regressor fitted on all rows, saved with joblib).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import joblib
import matplotlib

matplotlib.use("Agg")  # files only: there is no display in a pipeline

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from pandas.plotting import scatter_matrix
from sklearn.ensemble import RandomForestRegressor
from sklearn.model_selection import ShuffleSplit, cross_val_score, learning_curve

SEED = 1


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Structured data regression")
    parser.add_argument("--input", required=True, help="a CSV file, or a directory of them")
    parser.add_argument("--target-col", required=True, help="the column to predict")
    parser.add_argument("--output", metavar="DIR", default="./output", help="output directory")
    return parser.parse_args(argv)


def csv_files(where: Path) -> list[Path]:
    return [where] if where.is_file() else sorted(where.rglob("*.csv"))


def pairplot(data: pd.DataFrame, path: Path) -> None:
    size = 2.0 * len(data.columns)
    axes = scatter_matrix(data, figsize=(size, size), diagonal="hist", alpha=0.6)
    axes[0, 0].figure.tight_layout()
    plt.savefig(path)
    plt.close("all")


def corr_matrix(data: pd.DataFrame, path: Path) -> None:
    corr = data.corr()
    fig, ax = plt.subplots(figsize=(6, 5))
    image = ax.imshow(corr, cmap="coolwarm", vmin=-1, vmax=1)
    ax.set_xticks(range(len(corr)), corr.columns, rotation=45)
    ax.set_yticks(range(len(corr)), corr.columns)
    for (i, j), value in np.ndenumerate(corr.to_numpy()):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center")
    fig.colorbar(image, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def learning_curve_plot(
    model: RandomForestRegressor, features: pd.DataFrame, target: pd.Series, path: Path
) -> None:
    splits = ShuffleSplit(n_splits=5, test_size=0.2, random_state=0)
    sizes, train, test = learning_curve(
        model, features, target, cv=splits, train_sizes=np.linspace(0.2, 1.0, 5)
    )
    fig, ax = plt.subplots(figsize=(6, 4.5))
    ax.set_title("Learning curve (random forest regressor)")
    ax.set_xlabel("training examples")
    ax.set_ylabel("R² score")
    for scores, label in ((train, "training"), (test, "cross-validation")):
        mean, spread = scores.mean(axis=1), scores.std(axis=1)
        ax.fill_between(sizes, mean - spread, mean + spread, alpha=0.2)
        ax.plot(sizes, mean, "o-", label=label)
    ax.grid(True)
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run(source: Path, target_col: str, out: Path) -> None:
    name = source.stem
    data = pd.read_csv(source)
    if target_col not in data.columns:
        sys.exit(f"{source}: no column {target_col!r} (it has {', '.join(data.columns)})")
    features, target = data.drop(columns=target_col), data[target_col]
    print(f"{source.name}: {len(data)} rows of {len(data.columns)} columns")

    pairplot(data, out / f"{name}_pairplot.png")
    corr_matrix(data, out / f"{name}_corr_matrix.png")

    model = RandomForestRegressor(n_estimators=50, random_state=SEED)
    scores = cross_val_score(model, features, target, cv=5)
    print(f"{source.name}: R² {scores.mean():.3f} (+/- {2 * scores.std():.3f}), 5-fold")
    learning_curve_plot(model, features, target, out / f"{name}_cv_reg_output.png")

    model.fit(features, target)
    joblib.dump(model, out / f"{name}_final_model.sav")


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    sources = csv_files(Path(args.input))
    if not sources:
        sys.exit(f"no CSV file in {args.input}")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for source in sources:
        run(source, args.target_col, out)


if __name__ == "__main__":
    main(sys.argv[1:])
