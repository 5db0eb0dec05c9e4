"""Generate one day of synthetic credit-card customers with the limit a bank granted them.

    python examples/credit/generate.py --day 1 --rows 2000 --out data/raw

writes ``data/raw/day-001.csv``. The same day always gives the same file. Each day brings new
customers (plus a few returning ones, whose fixed attributes stay the same), and the bank's
policy drifts slowly from day to day so that a model trained on old days gets worse.

The data is deliberately dirty, the way exports from several systems are: missing values,
incomes written as text ("$54,000", "USD 54000", "54.5k"), categoricals in random case with
stray whitespace, impossible ages, utilisation as a percentage, duplicated rows, outliers.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

SEED = 20_240_601
log = logging.getLogger("credit.generate")

REGIONS = ("north", "south", "east", "west", "central")
REGION_FACTOR = {"north": 1.0, "south": 0.95, "east": 1.02, "west": 1.06, "central": 0.98}
STATUS = ("salaried", "self_employed", "part_time", "unemployed", "retired")
STATUS_FACTOR = {
    "salaried": 1.0,
    "self_employed": 0.88,
    "part_time": 0.72,
    "unemployed": 0.45,
    "retired": 0.85,
}
HOME = ("own", "mortgage", "rent", "other")
HOME_FACTOR = {"own": 1.12, "mortgage": 1.05, "rent": 0.92, "other": 0.88}
RETURNING_SHARE = 0.05


def customer_number(day: int, index: int) -> int:
    return day * 100_000 + index


def static_attributes(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Age (on day 1) and region: fixed for a customer, whatever day they appear on."""
    ages = np.empty(len(numbers))
    regions = np.empty(len(numbers), dtype=object)
    for i, number in enumerate(numbers):
        rng = np.random.default_rng([SEED, int(number)])
        ages[i] = 19 + rng.gamma(shape=4.0, scale=5.5)
        regions[i] = REGIONS[rng.choice(len(REGIONS), p=[0.2, 0.25, 0.2, 0.15, 0.2])]
    return np.minimum(ages, 90), regions


def credit_limit(df: pd.DataFrame, day: int, rng: np.random.Generator) -> np.ndarray:
    """The bank's (hidden) policy: affordability times risk, nonlinear, drifting with the day."""
    drift = day - 1
    income = df["annual_income"].to_numpy()
    dti = df["existing_debt"].to_numpy() / income
    late = df["late_payments_12m"].to_numpy()
    age = df["age"].to_numpy()

    affordability = 0.30 * (1 - 0.004 * drift) * income**0.95
    debt_penalty = 1 / (1 + np.exp(9 * (dti - 0.45)))
    late_penalty = np.exp(-(0.25 + 0.01 * drift) * late)
    history = 0.55 + 0.45 * (1 - np.exp(-df["credit_history_years"].to_numpy() / 6))
    utilisation = 1 - 0.4 * df["utilisation"].to_numpy() ** 2
    age_factor = 1 - 0.25 * np.exp(-(age - 18) / 5) - 0.15 * np.clip(age - 65, 0, 25) / 25
    cards = 1 + 0.05 * np.minimum(df["num_credit_cards"].to_numpy(), 6)
    factors = (
        df["employment_status"].map(STATUS_FACTOR).to_numpy()
        * df["home_ownership"].map(HOME_FACTOR).to_numpy()
        * df["region"].map(REGION_FACTOR).to_numpy()
    )
    noise = rng.lognormal(0.0, 0.08, len(df))
    limit = (
        affordability
        * debt_penalty
        * late_penalty
        * history
        * utilisation
        * age_factor
        * cards
        * factors
        * noise
    )
    return np.round(np.clip(limit, 300, 150_000) / 50) * 50


def clean_day(day: int, rows: int, rng: np.random.Generator) -> pd.DataFrame:
    numbers = np.array([customer_number(day, i) for i in range(rows)])
    if day > 1:
        returning = rng.random(rows) < RETURNING_SHARE
        earlier_day = rng.integers(1, day, rows)
        earlier_index = rng.integers(0, rows, rows)
        numbers = np.where(returning, earlier_day * 100_000 + earlier_index, numbers)
    age0, region = static_attributes(numbers)
    age = np.floor(age0 + (day - numbers // 100_000) / 365).astype(int)

    status_p = np.tile([0.64, 0.15, 0.1, 0.06, 0.05], (rows, 1))
    status_p[age >= 63] = [0.2, 0.1, 0.1, 0.05, 0.55]
    status = np.array([STATUS[rng.choice(5, p=p)] for p in status_p], dtype=object)

    income = rng.lognormal(np.log(52_000), 0.5, rows) * (1 + 0.003 * (day - 1))
    income *= np.select(
        [status == "part_time", status == "unemployed", status == "retired"],
        [0.5, 0.3, 0.6],
        1.0,
    )
    income *= 0.75 + 0.5 * np.clip((age - 18) / 30, 0, 1)
    income = np.round(np.clip(income, 6_000, 900_000), -2)

    working_life = np.maximum(age - 18, 0)
    employment = np.where(
        status == "unemployed", 0.0, np.minimum(rng.gamma(2.0, 4.0, rows), working_life)
    )
    history = np.minimum(working_life, rng.gamma(3.0, 3.5, rows))
    debt = income * rng.beta(2, 5, rows) * 0.9
    debt = np.where(rng.random(rows) < 0.15, 0.0, np.round(debt, -1))
    dti = debt / income
    utilisation = np.clip(rng.beta(2, 3, rows) + 0.3 * dti, 0, 1)
    late = rng.poisson(0.2 + 1.8 * utilisation * dti + 0.5 * (status == "unemployed"))
    cards = np.clip(rng.poisson(1.2 + history / 6), 0, 15)

    p_own = np.clip(0.05 + (age - 25) / 60, 0.02, 0.6)
    p_mortgage = np.where(age < 70, 0.3, 0.1)
    home_u = rng.random(rows)
    home = np.where(
        home_u < p_own,
        "own",
        np.where(home_u < p_own + p_mortgage, "mortgage", np.where(home_u < 0.96, "rent", "other")),
    )

    df = pd.DataFrame(
        {
            "customer_id": [f"C{n:08d}" for n in numbers],
            "age": age.astype(float),
            "annual_income": income,
            "employment_years": np.round(employment, 1),
            "existing_debt": debt,
            "num_credit_cards": cards.astype(float),
            "late_payments_12m": late.astype(float),
            "credit_history_years": np.round(history, 1),
            "utilisation": np.round(utilisation, 3),
            "home_ownership": home.astype(object),
            "employment_status": status,
            "region": region,
        }
    )
    df["credit_limit"] = credit_limit(df, day, rng)
    return df


def _variant(value: str, rng: np.random.Generator) -> str:
    styles = (str.upper, str.title, lambda v: f"  {v}", lambda v: f"{v} ", lambda v: v.title())
    text = styles[rng.integers(len(styles))](value)
    return text.replace("_", rng.choice(["_", "-", " "]))


def _money_text(value: float, rng: np.random.Generator) -> str:
    style = rng.integers(4)
    if style == 0:
        return f"${value:,.0f}"
    if style == 1:
        return f"{value:,.2f}"
    if style == 2:
        return f"USD {value:.0f}"
    return f"{value / 1000:g}k"


def make_dirty(df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Add the inconsistencies a real export has. Keeps ``credit_limit`` of valid rows honest."""
    rows = len(df)
    dirty = df.astype(object)

    def pick(share: float) -> np.ndarray:
        return np.flatnonzero(rng.random(rows) < share)

    for col, share in {
        "age": 0.01,
        "annual_income": 0.02,
        "employment_years": 0.04,
        "existing_debt": 0.02,
        "late_payments_12m": 0.02,
        "credit_history_years": 0.02,
        "utilisation": 0.02,
        "home_ownership": 0.02,
        "employment_status": 0.01,
        "region": 0.02,
        "credit_limit": 0.005,
    }.items():
        dirty.loc[pick(share), col] = None

    for i in pick(0.10):
        if dirty.at[i, "annual_income"] is not None:
            dirty.at[i, "annual_income"] = _money_text(float(df.at[i, "annual_income"]), rng)
    for i in pick(0.03):
        dirty.at[i, "existing_debt"] = f"${float(df.at[i, 'existing_debt']):,.0f}"
    for col in ("home_ownership", "employment_status", "region"):
        for i in pick(0.15):
            if dirty.at[i, col] is not None:
                dirty.at[i, col] = _variant(str(dirty.at[i, col]), rng)
    for i in pick(0.01):
        dirty.at[i, "age"] = float(rng.choice([-1, 0, 7, 150, 999]))
    for i in pick(0.03):
        if dirty.at[i, "utilisation"] is not None:
            dirty.at[i, "utilisation"] = round(float(df.at[i, "utilisation"]) * 100, 1)
    for i in pick(0.005):
        dirty.at[i, "annual_income"] = float(df.at[i, "annual_income"]) * 20
    for i in pick(0.005):
        dirty.at[i, "existing_debt"] = float(df.at[i, "existing_debt"]) * 10 + 50_000

    duplicates = dirty.iloc[pick(0.02)].copy()
    for i in duplicates.index:
        if duplicates.at[i, "region"] is not None:
            duplicates.at[i, "region"] = str(duplicates.at[i, "region"]).upper()
    dirty = pd.concat([dirty, duplicates], ignore_index=True)
    order = rng.permutation(len(dirty))
    return dirty.iloc[order].reset_index(drop=True)


def generate(day: int, rows: int) -> pd.DataFrame:
    rng = np.random.default_rng([SEED, day])
    return make_dirty(clean_day(day, rows, rng), rng)


def _format(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--day", type=int, required=True, help="day number, 1 or more")
    parser.add_argument("--rows", type=int, default=2000, help="customers on that day")
    parser.add_argument("--out", type=Path, required=True, help="directory for day-NNN.csv")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not 1 <= args.day <= 999:
        parser.error("--day must be between 1 and 999")
    if not 1 <= args.rows < 100_000:
        parser.error("--rows must be between 1 and 99999")

    df = generate(args.day, args.rows)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"day-{args.day:03d}.csv"
    df.map(_format).to_csv(path, index=False, lineterminator="\n")
    log.info("wrote %s: %d rows (%d customers before duplicates)", path, len(df), args.rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
