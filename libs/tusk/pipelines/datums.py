"""Datums: how a job's input commits are split into units of work, with Pachyderm's semantics.

A datum's id hashes the (input name, path, content hash) of its parts and not the commits, so
a file that did not change between two commits gives the same datum id: that is what lets a
job skip what an earlier job already processed.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Collection, Container, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import blake3

from tusk.errors import InvalidArgument, TuskError
from tusk.paths import parent_path
from tusk.pipelines.glob import expand_key
from tusk.pipelines.models import Input, PfsInput

MatchType = Literal["file", "dir"]


@dataclass(frozen=True, slots=True)
class Match:
    """One entry a glob matched; a directory's hash covers everything beneath it."""

    path: str
    type: MatchType
    hash: str
    size: int


class InputLister(Protocol):
    async def glob(self, repo: str, commit: str, pattern: str) -> list[Match]:
        """Entries of ``repo`` at ``commit`` matching ``pattern`` (no capture groups)."""
        ...


@dataclass(frozen=True, slots=True)
class DatumInput:
    """One part of a datum: a match of one input, mounted at ``/pfs/<name><path>``."""

    name: str
    repo: str
    branch: str
    commit: str
    path: str
    type: MatchType
    hash: str
    size: int


@dataclass(frozen=True, slots=True)
class Datum:
    id: str
    inputs: tuple[DatumInput, ...]  # sorted by (name, path)

    @classmethod
    def of(cls, inputs: Iterable[DatumInput]) -> Datum:
        parts = tuple(sorted(inputs, key=lambda i: (i.name, i.path)))
        return cls(datum_id((i.name, i.path, i.hash) for i in parts), parts)

    @property
    def size(self) -> int:
        return sum(i.size for i in self.inputs)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "inputs": [asdict(i) for i in self.inputs]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Datum:
        return cls(data["id"], tuple(DatumInput(**i) for i in data["inputs"]))


def datum_id(parts: Iterable[tuple[str, str, str]]) -> str:
    """Hex BLAKE3 of the sorted (input name, path, content hash) triples.

    Names cannot hold NUL and paths no control characters, so NUL and newline delimit
    unambiguously.
    """
    encoded = "\n".join("\0".join(part) for part in sorted(parts))
    return str(blake3.blake3(encoded.encode()).hexdigest())


# --- computing datums ----------------------------------------------------------------------

Parts = tuple[DatumInput, ...]


async def compute_datums(
    input: Input, commits: Mapping[str, str], lister: InputLister
) -> list[Datum]:
    """The datums of ``input`` at ``commits`` (pfs input key → commit id), in a stable order.

    - pfs: one datum per glob match, by path;
    - cross: the product of its inputs' datums; union: their concatenation;
    - join: the matches of each input grouped by ``join_on``; per key, the product of the
      inputs' matches. A key missing from some input is dropped, unless one of the inputs that
      has it is ``outer_join``; keys in sorted order;
    - group: one datum per ``group_by`` key with every match of every input, keys sorted.

    An input whose key is not in ``commits`` (its branch has no commit yet) matches nothing,
    as in Pachyderm. A datum that appears twice (say in two union branches) is kept once.
    Cron inputs must first be replaced by their pfs view (``PipelineSpec.resolved_input()``).
    """
    if input.cron_inputs():
        raise InvalidArgument(
            "datums read a cron input through its repo: pass spec.resolved_input()"
        )
    wanted = {
        (pfs.repo, commits[pfs.key], pfs.parsed_glob.listing)
        for pfs in input.pfs_inputs()
        if pfs.key in commits
    }
    requests = sorted(wanted)
    tasks = [asyncio.ensure_future(lister.glob(*request)) for request in requests]
    try:
        results = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:  # gather leaves the others running; nobody would await them
            task.cancel()
        raise
    listings = dict(zip(requests, results, strict=True))

    def matches(pfs: PfsInput) -> list[DatumInput]:
        commit = commits.get(pfs.key)
        if commit is None:
            return []
        found = listings[(pfs.repo, commit, pfs.parsed_glob.listing)]
        return [
            DatumInput(pfs.name, pfs.repo, pfs.branch, commit, m.path, m.type, m.hash, m.size)
            for m in sorted(found, key=lambda m: m.path)
        ]

    datums: dict[str, Datum] = {}
    for parts in _evaluate(input, matches):
        datum = Datum.of(parts)
        datums.setdefault(datum.id, datum)
    return list(datums.values())


def _evaluate(node: Input, matches: _Matcher) -> list[Parts]:
    if node.pfs is not None:
        return [(m,) for m in matches(node.pfs)]
    children = node.children
    if node.union is not None:
        return [parts for child in children for parts in _evaluate(child, matches)]
    if node.cross is not None:
        return [
            tuple(itertools.chain.from_iterable(combo))
            for combo in itertools.product(*(_evaluate(c, matches) for c in children))
        ]
    pfs_children = [c.pfs for c in children if c.pfs is not None]
    if len(pfs_children) != len(children):
        raise InvalidArgument(f"each input of a {node.kind} must be a pfs input")
    if node.join is not None:
        return _join(pfs_children, matches)
    if node.group is not None:
        return _group(pfs_children, matches)
    raise AssertionError(f"unexpected input kind {node.kind}")  # pragma: no cover


class _Matcher(Protocol):
    def __call__(self, pfs: PfsInput, /) -> list[DatumInput]: ...


def _keyed(pfs: PfsInput, template: str | None, matches: _Matcher) -> list[tuple[str, DatumInput]]:
    glob = pfs.parsed_glob
    keyed = []
    for match in matches(pfs):
        groups = glob.groups(match.path)
        if groups is None:
            raise TuskError(
                f"the repo service matched {match.path!r} for glob {pfs.glob!r} of input "
                f"{pfs.name!r}, but the glob's capture groups do not match it"
            )
        keyed.append((expand_key(template or "", groups), match))
    return keyed


def _join(inputs: Sequence[PfsInput], matches: _Matcher) -> list[Parts]:
    by_key: dict[str, list[list[DatumInput]]] = {}
    for i, pfs in enumerate(inputs):
        for key, match in _keyed(pfs, pfs.join_on, matches):
            by_key.setdefault(key, [[] for _ in inputs])[i].append(match)
    result: list[Parts] = []
    for key in sorted(by_key):
        present = [i for i, found in enumerate(by_key[key]) if found]
        if len(present) < len(inputs) and not any(inputs[i].outer_join for i in present):
            continue  # an inner join needs the key in every input
        result.extend(itertools.product(*(by_key[key][i] for i in present)))
    return result


def _group(inputs: Sequence[PfsInput], matches: _Matcher) -> list[Parts]:
    by_key: dict[str, list[DatumInput]] = {}
    for pfs in inputs:
        for key, match in _keyed(pfs, pfs.group_by, matches):
            by_key.setdefault(key, []).append(match)
    return [tuple(by_key[key]) for key in sorted(by_key)]


# --- scheduling ----------------------------------------------------------------------------


def split_into_shards(datums: Sequence[Datum], n: int) -> list[list[Datum]]:
    """At most ``n`` contiguous shards whose sizes differ by at most one; none is empty."""
    if n < 1:
        raise InvalidArgument(f"the number of shards must be at least 1, not {n}")
    count = min(n, len(datums))
    if count == 0:
        return []
    size, extra = divmod(len(datums), count)
    shards = []
    start = 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        shards.append(list(datums[start:end]))
        start = end
    return shards


@dataclass(frozen=True)
class DatumPlan:
    new: list[Datum]  # to process
    skipped: list[Datum]  # processed successfully before: their output is carried forward


def plan_datums(datums: Iterable[Datum], processed: Container[str]) -> DatumPlan:
    """Split a job's datums by whether an earlier job of the same pipeline version processed
    them successfully (``processed`` holds those datum ids; pass a set, it is probed once per
    datum)."""
    new: list[Datum] = []
    skipped: list[Datum] = []
    for datum in datums:
        (skipped if datum.id in processed else new).append(datum)
    return DatumPlan(new, skipped)


def removed_datums(previous: Iterable[str], current: Collection[Datum]) -> list[str]:
    """Datum ids of the previous job that this job no longer has: their outputs go away."""
    present = {d.id for d in current}
    return sorted(set(previous) - present)


def find_output_collisions(
    outputs: Mapping[str, Iterable[str]],
) -> list[tuple[str, str, str]]:
    """Pairs of datums whose outputs (datum id → paths written) cannot be merged: the same path
    from both, or a file of one where the other has a directory. Each as
    ``(path, datum_a, datum_b)`` with ``datum_a < datum_b``, sorted; every further writer of a
    path is paired with its first (smallest id), so each datum involved is named at least once."""
    writer: dict[str, str] = {}
    found: set[tuple[str, str, str]] = set()
    for datum in sorted(outputs):
        for path in sorted(set(outputs[datum])):
            first = writer.setdefault(path, datum)
            if first != datum:
                found.add(_collision(path, first, datum))
    for path, datum in writer.items():
        ancestor = parent_path(path)
        while ancestor != "/":
            other = writer.get(ancestor)
            if other is not None and other != datum:
                found.add(_collision(ancestor, other, datum))
            ancestor = parent_path(ancestor)
    return sorted(found)


def _collision(path: str, one: str, other: str) -> tuple[str, str, str]:
    return (path, one, other) if one < other else (path, other, one)
