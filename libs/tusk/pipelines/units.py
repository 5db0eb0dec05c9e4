"""Durations (``30s``, ``1h30m``, as Pachyderm and Go write them) and Kubernetes quantities."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation

_DURATION = re.compile(r"(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h|d))+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d)")
_MICROSECONDS = {
    "ns": Decimal("0.001"),
    "us": Decimal(1),
    "µs": Decimal(1),
    "ms": Decimal(1_000),
    "s": Decimal(1_000_000),
    "m": Decimal(60_000_000),
    "h": Decimal(3_600_000_000),
    "d": Decimal(86_400_000_000),
}


# Longer timeouts mean "never" and would overflow timedelta (which stops at 999999999 days).
MAX_DURATION = timedelta(days=3650)


def parse_duration(text: str) -> timedelta:
    """``"30s"``, ``"5m"``, ``"1h30m"``, ``"1.5h"``, ``"250ms"`` → timedelta (> 0, at most
    ten years)."""
    compact = text.strip()
    if not _DURATION.fullmatch(compact):
        raise ValueError(
            f"invalid duration {text!r}: use a number and a unit (ms, s, m, h, d), "
            "e.g. '30s', '5m', '1h' or '1h30m'"
        )
    micros = sum(
        (Decimal(num) * _MICROSECONDS[unit] for num, unit in _DURATION_PART.findall(compact)),
        Decimal(0),
    )
    if micros < 1:
        raise ValueError(f"invalid duration {text!r}: it must be at least 1µs")
    if micros > MAX_DURATION // timedelta(microseconds=1):
        raise ValueError(f"invalid duration {text[:40]!r}: it must be at most 3650d (ten years)")
    return timedelta(microseconds=int(micros))


def format_duration(value: timedelta) -> str:
    """The inverse of :func:`parse_duration`: ``timedelta(minutes=90)`` → ``"1h30m"``."""
    micros = value // timedelta(microseconds=1)
    if micros <= 0:
        return "0s"
    parts = []
    for unit, size in (("h", 3_600_000_000), ("m", 60_000_000), ("s", 1_000_000), ("ms", 1_000)):
        count, micros = divmod(micros, size)
        if count:
            parts.append(f"{count}{unit}")
    if micros:
        parts.append(f"{micros}us")
    return "".join(parts)


# Kubernetes resource.Quantity: a decimal number and a binary-SI, decimal-SI or exponent suffix.
_QUANTITY = re.compile(
    r"(?P<number>\d+(?:\.\d*)?|\.\d+)(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?"
)
_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes quantity (``"500m"``, ``"2Gi"``, ``"1.5"``, ``"1e3"``) as a number."""
    match = _QUANTITY.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not a Kubernetes quantity: use a number with an optional suffix, "
            "e.g. '500m' or '2' for CPUs, '512Mi' or '2Gi' for memory"
        )
    number, suffix = Decimal(match["number"]), match["suffix"] or ""
    if suffix[:1] in ("e", "E"):
        try:
            return number.scaleb(int(suffix[1:]))
        except (InvalidOperation, OverflowError) as exc:  # pragma: no cover - absurd exponents
            raise ValueError(f"{text!r} is out of range") from exc
    return number * _SUFFIX[suffix]
