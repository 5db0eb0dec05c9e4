"""Glob patterns with capture groups, as ``join`` and ``group`` inputs use them.

The repo service matches globs segment by segment (``*``, ``?`` and ``[...]`` within a segment,
a ``**`` segment across any number of directories, ``/`` the root itself) and knows nothing of
parentheses. So a pattern such as ``/(*)/(*).csv`` is listed as ``/*/*.csv`` and then turned
into a regular expression, with the same segment semantics, whose groups give the join key.
A literal parenthesis is written ``[(]``.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

# A globstar together with the '/' before it stands for zero or more whole segments.
_GLOBSTAR = r"(?:/[^/]+)*"
_KEY_REF = re.compile(r"\$(?:\{(\d+)\}|(\d+)|(\$))")


class GlobError(ValueError):
    """A glob pattern or key template that cannot be used; the message says why."""


@dataclass(frozen=True)
class Glob:
    pattern: str
    listing: str  # what the repo service is asked for: the pattern without capture groups
    regex: re.Pattern[str]
    group_count: int

    def groups(self, path: str) -> tuple[str, ...] | None:
        """The captured groups for a path the listing matched, or None if it does not match."""
        match = self.regex.fullmatch("" if path == "/" else path)
        return None if match is None else tuple(g or "" for g in match.groups())


def parse_glob(pattern: str) -> Glob:
    """Validate ``pattern`` and compile it; raise :class:`GlobError` with the reason."""
    if not pattern:
        raise GlobError("the glob is empty; use '/' for the whole commit")
    if any(ord(c) < 0x20 or c == "\x7f" for c in pattern):
        raise GlobError("the glob contains a control character")
    listing: list[str] = []
    regex: list[str] = []
    depth = 0
    groups = 0
    for segment in (s for s in pattern.split("/") if s):
        if segment in (".", ".."):
            raise GlobError(f"the glob has a {segment!r} segment; globs match inside the commit")
        plain, seg_regex, opened, closed, depth = _translate_segment(segment, depth)
        groups += opened
        if not plain:
            raise GlobError(f"segment {segment!r} is empty without its parentheses")
        if plain == "**":
            if opened or closed or depth:
                raise GlobError("a '**' segment cannot be inside a capture group")
            regex.append(_GLOBSTAR)
        else:
            regex.append("/" + seg_regex)
        listing.append(plain)
    if depth:
        raise GlobError("unbalanced parentheses: a '(' is never closed")
    return Glob(
        pattern=pattern,
        listing="/" + "/".join(listing),
        regex=re.compile("".join(regex), re.DOTALL),
        group_count=groups,
    )


def _translate_segment(segment: str, depth: int) -> tuple[str, str, int, int, int]:
    """(segment without groups, its regex, groups opened, groups closed, depth after)."""
    plain: list[str] = []
    regex: list[str] = []
    opened = closed = 0
    i, n = 0, len(segment)
    while i < n:
        c = segment[i]
        i += 1
        if c == "(":
            depth += 1
            opened += 1
            regex.append("(")
        elif c == ")":
            if depth == 0:
                raise GlobError("unbalanced parentheses: a ')' has no '('")
            depth -= 1
            closed += 1
            regex.append(")")
        elif c == "*":
            plain.append(c)
            if not regex or regex[-1] != "[^/]*":  # fnmatch collapses runs of '*'
                regex.append("[^/]*")
        elif c == "?":
            plain.append(c)
            regex.append("[^/]")
        elif c == "[":
            end = _bracket_end(segment, i)
            if end is None:  # fnmatch reads an unclosed '[' as itself
                plain.append(c)
                regex.append(re.escape(c))
            else:
                bracket = segment[i - 1 : end + 1]
                plain.append(bracket)
                regex.append("(?!/)" + _bracket_regex(bracket))
                i = end + 1
        else:
            plain.append(c)
            regex.append(re.escape(c))
    return "".join(plain), "".join(regex), opened, closed, depth


def _bracket_end(segment: str, i: int) -> int | None:
    """Index of the ']' closing a bracket that opened just before ``i``, by fnmatch's rules."""
    j = i
    if j < len(segment) and segment[j] == "!":
        j += 1
    if j < len(segment) and segment[j] == "]":
        j += 1
    while j < len(segment) and segment[j] != "]":
        j += 1
    return j if j < len(segment) else None


def _bracket_regex(bracket: str) -> str:
    # fnmatch's own translation, so character classes mean exactly what the repo service's
    # fnmatch makes of them (ranges, '!', escaping).
    translated = fnmatch.translate(bracket)
    prefix, suffix = "(?s:", r")\Z"
    if not (translated.startswith(prefix) and translated.endswith(suffix)):  # pragma: no cover
        raise GlobError(f"cannot translate {bracket!r}")
    return translated[len(prefix) : -len(suffix)]


def key_references(template: str) -> list[int]:
    """The group numbers ``$1``, ``${2}`` … a ``join_on`` / ``group_by`` template uses."""
    return [int(m[1] or m[2]) for m in _KEY_REF.finditer(template) if not m[3]]


def validate_key_template(template: str, glob: Glob) -> None:
    if not template:
        raise GlobError("the key is empty; use e.g. '$1' for the first capture group")
    for number in key_references(template):
        if number == 0 or number > glob.group_count:
            raise GlobError(
                f"${number} refers to capture group {number}, but the glob "
                f"{glob.pattern!r} has {glob.group_count} (groups are written in parentheses, "
                "e.g. '/(*).csv')"
            )


def expand_key(template: str, groups: tuple[str, ...]) -> str:
    """``$N`` / ``${N}`` replaced by group N (1-based), ``$$`` by ``$``."""

    def replace(m: re.Match[str]) -> str:
        if m[3]:
            return "$"
        return groups[int(m[1] or m[2]) - 1]

    return _KEY_REF.sub(replace, template)
