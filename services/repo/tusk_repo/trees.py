"""File trees as Merkle trees of directory nodes.

A node is the sorted list of a directory's entries; its key is the BLAKE3 hash of its
encoding, so equal directories are stored once and two trees are compared by descending only
into subtrees whose hashes differ. Directories exist only while they hold files.

Everything here is pure logic over a ``Loader`` (hash → node); the SQL lives in ``store.py``.
"""

from __future__ import annotations

import asyncio
import binascii
import re
from bisect import bisect_left
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

import blake3
import orjson

from tusk.errors import Conflict, InvalidArgument, NotFound
from tusk.paths import split_path

FILE = "file"
DIR = "dir"


@dataclass(slots=True)
class Entry:
    """One name in a directory. Never changed once made; not ``frozen`` only because frozen
    dataclasses are several times slower to create, and listing a large directory makes ten
    thousand at a time."""

    name: str
    kind: str
    hash: str
    size: int
    count: int  # files under a directory; 1 for a file


_Row = tuple[str, str, str, int, int]  # an entry's fields, in Entry's order


class Node:
    """A directory's entries, in name order.

    Held as plain tuples of strings and ints, which the garbage collector stops tracking, not
    as Entry objects: with a cache of millions of entries, every full collection would walk
    them all and pause requests for a tenth of a second or more. Entries are made on access.
    """

    __slots__ = ("_names", "_rows")

    def __init__(self, rows: tuple[_Row, ...]) -> None:
        self._rows = rows
        self._names = tuple([row[0] for row in rows])

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def rows(self) -> tuple[tuple[str, str, str, int, int], ...]:
        """The entries as (name, kind, hash, size, count) tuples, without making Entry objects."""
        return self._rows

    @property
    def entries(self) -> list[Entry]:
        return [Entry(*row) for row in self._rows]

    def get(self, name: str) -> Entry | None:
        i = bisect_left(self._names, name)
        if i < len(self._names) and self._names[i] == name:
            return Entry(*self._rows[i])
        return None


def encode_rows(rows: Iterable[_Row]) -> bytes:
    """The encoding of a node's entries given as (name, kind, hash, size, count), in name order:
    compact JSON in UTF-8, byte for byte what ``json.dumps(rows, separators=(",", ":"),
    ensure_ascii=False)`` gives (node hashes depend on it), through orjson, which is tens of
    times faster at it."""
    return orjson.dumps([[n, "d" if k == DIR else "f", h, s, c] for n, k, h, s, c in rows])


def encode_node(entries: tuple[Entry, ...]) -> bytes:
    """The node's encoding; ``entries`` must be in name order."""
    return encode_rows((e.name, e.kind, e.hash, e.size, e.count) for e in entries)


def decode_node(blob: bytes) -> Node:
    # In name order already: encode_node is only given sorted entries.
    rows = [
        (name, DIR if kind == "d" else FILE, h, size, count)
        for name, kind, h, size, count in orjson.loads(blob)
    ]
    return Node(tuple(rows))


def node_hash(blob: bytes) -> str:
    return blake3.blake3(blob).hexdigest()


# Enough to tell files apart: a key shared by two files only keeps an unused one a while longer.
FILE_KEY_BYTES = 8


# In a node's encoding a kind is always preceded by its name and followed by the hash: ``"f"``
# with unescaped quotes is a whole string (a quote inside a string is escaped), and a name is
# preceded by ``[``, never by ``","``, so these match entries and nothing else (held by a
# property test against decoding).
_FILE_KEYS = re.compile(rb'","f","([0-9a-f]{%d})' % (2 * FILE_KEY_BYTES))
_SUBDIRS = re.compile(rb'","d","([0-9a-f]{64})')


def node_refs(blob: bytes) -> tuple[bytes, bytes]:
    """What a node refers to, packed for the garbage collector: (its subdirectories' hashes, 32
    raw bytes each; its files' keys, the first ``FILE_KEY_BYTES`` bytes of each file's hash).
    A collection reads these for every node every commit reaches, where decoding the entries
    costs ten times the bytes and a Python object per entry. Found in the encoding without
    decoding it, since every node saved pays for this. A kind the node does not hold at all is
    ruled out by a plain substring search, many times faster than the pattern's scan."""
    return (
        _packed(_SUBDIRS, b'","d","', blob),
        _packed(_FILE_KEYS, b'","f","', blob),
    )


def _packed(pattern: re.Pattern[bytes], marker: bytes, blob: bytes) -> bytes:
    return binascii.unhexlify(b"".join(pattern.findall(blob))) if marker in blob else b""


# A row's kind as it appears in an encoding, once per entry and nowhere else (see above).
_KIND_MARKS = {FILE: b'","f","', DIR: b'","d","'}


def replaced_refs(
    blob: bytes, refs: tuple[bytes, bytes], replaced: Iterable[tuple[int, str, str, str]]
) -> tuple[bytes, bytes] | None:
    """``node_refs`` of ``blob`` with rows replaced in place (``rowspans.splice``), from
    ``node_refs(blob)``: each replacement is (the row's offset in ``blob``, its kind, the new
    row's kind, the new row's hash). A merge replaces a few hundred rows of a large node: this
    counts the entries before each (a substring count, several times faster than the pattern's
    scan) and rewrites their references. None when a row changes kind (scan the new encoding)."""
    packed = {DIR: bytearray(refs[0]), FILE: bytearray(refs[1])}
    width = {DIR: 32, FILE: FILE_KEY_BYTES}
    before = {DIR: 0, FILE: 0}  # entries of each kind before ``done``
    done = 0
    for offset, kind, new_kind, digest in sorted(replaced):
        if kind != new_kind:
            return None
        before[kind] += blob.count(_KIND_MARKS[kind], done, offset)
        other = DIR if kind == FILE else FILE
        if packed[other]:  # a node holding both kinds counts both
            before[other] += blob.count(_KIND_MARKS[other], done, offset)
        done = offset
        at = before[kind] * width[kind]
        packed[kind][at : at + width[kind]] = bytes.fromhex(digest[: 2 * width[kind]])
    return bytes(packed[DIR]), bytes(packed[FILE])


def file_keys_of(digests: Iterable[str]) -> bytes:
    """The packed keys of files given by hash, as ``node_refs`` packs them."""
    return bytes.fromhex("".join(d[: 2 * FILE_KEY_BYTES] for d in digests))


EMPTY_NODE = encode_node(())
EMPTY_TREE = node_hash(EMPTY_NODE)

Loader = Callable[[str], Awaitable[Node]]
# Many nodes at once (hash → node, every one asked for): comparing trees reads a whole level of
# directories in one round trip instead of one per directory.
ManyLoader = Callable[[Collection[str]], Awaitable[Mapping[str, Node]]]


def one_by_one(load: Loader) -> ManyLoader:
    """A ManyLoader over a loader of single nodes (in-memory trees, tests)."""

    async def load_many(digests: Collection[str]) -> Mapping[str, Node]:
        return {digest: await load(digest) for digest in digests}

    return load_many


def single(load_many: ManyLoader) -> Loader:
    async def load(digest: str) -> Node:
        return (await load_many((digest,)))[digest]

    return load


# --- merging staged changes into a tree -------------------------------------------------------


@dataclass(slots=True)
class _Patch:
    """The changes beneath one directory: subdirectories (or names deleted) that change, and
    files put directly in it, kept apart so that a put costs a dict entry, not a patch."""

    delete: bool = False
    children: dict[str, _Patch] = field(default_factory=dict)
    files: dict[str, tuple[str, int]] = field(default_factory=dict)

    def has_puts_beneath(self) -> bool:
        return bool(self.files) or any(c.has_puts_beneath() for c in self.children.values())

    def at(self, path: str) -> _Patch:
        node = self
        for segment in split_path(path):
            node = node.children.setdefault(segment, _Patch())
        return node


@dataclass(frozen=True)
class MergeResult:
    root: str
    size: int
    count: int
    new_nodes: dict[str, bytes]


async def merge(
    load: Loader,
    base_root: str,
    deletes: Iterable[str],
    puts: Iterable[tuple[str, str, int]],
) -> MergeResult:
    """Apply deletes (paths) and then puts ((path, file hash, size)) to the tree at ``base_root``.

    Deletes come first because staging drops a delete's earlier puts beneath it, so any put that
    remains was made after the delete. Only directories on changed paths are re-encoded.
    """
    patch = _Patch()
    for path in deletes:
        patch.at(path).delete = True
    # Puts come by the hundred thousand, mostly into a few directories: find each directory's
    # patch once rather than walking the path of every file.
    directories: dict[str, dict[str, tuple[str, int]]] = {}
    for path, file_hash, size in puts:
        parent, _, name = path.rpartition("/")
        files = directories.get(parent)
        if files is None:
            files = directories[parent] = patch.at(parent).files
        files[name] = (file_hash, size)
    new_nodes: dict[str, bytes] = {}

    # Entries are handled as (name, kind, hash, size, count) rows, not Entry objects: a commit
    # of a hundred thousand files would otherwise make and sort as many objects.
    async def apply(base: str | None, change: _Patch, path: str) -> _Row | None:
        rows: dict[str, _Row] = (
            {}
            if (change.delete or base is None)
            else {row[0]: row for row in (await load(base)).rows}
        )
        for name, child in change.children.items():
            child_path = f"{path.rstrip('/')}/{name}"
            current = None if child.delete else rows.get(name)
            # What happens beneath this name first, then a file put at the name itself (below),
            # so that a directory emptied by this commit can become a file.
            if child.children or child.files:
                if current is not None and current[1] == FILE:
                    if child.has_puts_beneath():
                        raise Conflict(
                            f"cannot put files under {child_path}: it is a file (delete it first)"
                        )
                else:  # deletes beneath a file change nothing; otherwise rebuild the directory
                    sub = await apply(current[2] if current else None, child, child_path)
                    current = None if sub is None else (name, DIR, sub[2], sub[3], sub[4])
            if current is None:
                rows.pop(name, None)
            else:
                rows[name] = current
        prefix = path.rstrip("/")
        for name, (file_hash, size) in change.files.items():
            current = rows.get(name)
            if current is not None and current[1] == DIR:
                raise Conflict(
                    f"cannot put file {prefix}/{name}: it is a directory with files in it "
                    "(delete it first)"
                )
            rows[name] = (name, FILE, file_hash, size, 1)
        if not rows:
            return None
        ordered = [rows[name] for name in sorted(rows)]
        blob = encode_rows(ordered)
        digest = node_hash(blob)
        new_nodes[digest] = blob
        return ("", DIR, digest, sum(row[3] for row in ordered), sum(row[4] for row in ordered))

    result = await apply(base_root, patch, "/")
    if result is None:
        new_nodes[EMPTY_TREE] = EMPTY_NODE
        return MergeResult(EMPTY_TREE, 0, 0, new_nodes)
    return MergeResult(result[2], result[3], result[4], new_nodes)


# --- reading ---------------------------------------------------------------------------------


def root_entry(root: str, size: int = 0, count: int = 0) -> Entry:
    return Entry("", DIR, root, size, count)


async def lookup(load: Loader, root: str, path: str) -> Entry | None:
    """The entry at ``path`` (the root itself for ``/``), or None."""
    entry: Entry | None = root_entry(root)
    for segment in split_path(path):
        if entry is None or entry.kind != DIR:
            return None
        entry = (await load(entry.hash)).get(segment)
    if entry is not None and entry.name == "" and entry.kind == DIR:
        node = await load(root)
        return Entry(
            "", DIR, root, sum(e.size for e in node.entries), sum(e.count for e in node.entries)
        )
    return entry


async def list_dir(load: Loader, root: str, path: str) -> list[tuple[str, Entry]]:
    """The entries directly in the directory at ``path``; a file lists as itself."""
    entry = await lookup(load, root, path)
    if entry is None:
        raise NotFound(f"path {path} not found")
    if entry.kind == FILE:
        return [(path, entry)]
    prefix = path.rstrip("/")
    return [(f"{prefix}/{e.name}", e) for e in (await load(entry.hash)).entries]


async def walk_files(load: Loader, root: str, path: str = "/") -> AsyncIterator[tuple[str, Entry]]:
    """Every file at or under ``path``, in path order."""
    entry = await lookup(load, root, path)
    if entry is None:
        return
    async for item in _walk(load, path, entry):
        yield item


async def _walk(load: Loader, path: str, entry: Entry) -> AsyncIterator[tuple[str, Entry]]:
    if entry.kind == FILE:
        yield path, entry
        return
    prefix = path.rstrip("/")
    for child in (await load(entry.hash)).entries:
        async for item in _walk(load, f"{prefix}/{child.name}", child):
            yield item


# A glob is matched against every path of a tree; these bound what one request can ask for.
MAX_GLOB_CHARS = 4096
MAX_GLOB_SEGMENTS = 128
_YIELD_EVERY = 512  # directories visited between turns given to other requests


def validate_glob(pattern: str) -> list[str]:
    """The glob's segments (runs of ``**`` collapsed: they mean the same as one)."""
    if "\x00" in pattern or ".." in pattern.split("/"):
        raise InvalidArgument(f"invalid glob {pattern[:200]!r}")
    if len(pattern) > MAX_GLOB_CHARS:
        raise InvalidArgument(
            f"the glob is {len(pattern)} characters long; the limit is {MAX_GLOB_CHARS}"
        )
    if not pattern.startswith("/"):
        pattern = "/" + pattern
    segments: list[str] = []
    for segment in split_path(pattern):
        if not (segment == "**" and segments and segments[-1] == "**"):
            segments.append(segment)
    if len(segments) > MAX_GLOB_SEGMENTS:
        raise InvalidArgument(
            f"the glob has {len(segments)} segments; the limit is {MAX_GLOB_SEGMENTS}"
        )
    return segments


async def glob(load: Loader, root: str, pattern: str) -> list[tuple[str, Entry]]:
    """Entries matching a glob: ``*``, ``?`` and ``[...]`` within a segment, ``**`` across any
    number of directories. ``/`` matches the root itself (Pachyderm's one-datum glob).

    The pattern runs as a set of states over the tree (an NFA, not backtracking): each entry
    is visited at most once with every state it can be in, so the cost is linear in the size
    of the tree times the number of segments, however many ``**`` the glob holds."""
    segments = validate_glob(pattern)
    done = len(segments)
    final_globstar = bool(segments) and segments[-1] == "**"

    def closure(states: set[int]) -> frozenset[int]:
        # A '**' may match no directory at all: being before it is also being after it.
        for i in sorted(states):
            while i < done and segments[i] == "**":
                i += 1
                states.add(i)
        return frozenset(states)

    top = await lookup(load, root, "/")
    assert top is not None
    matches: dict[str, Entry] = {}
    pending: list[tuple[str, Entry, frozenset[int]]] = [("", top, closure({0}))]
    visited = 0
    while pending:
        path, entry, states = pending.pop()
        if done in states:
            matches[path or "/"] = entry
        live = [i for i in states if i < done]
        if entry.kind != DIR or not live:
            continue
        visited += 1
        if visited % _YIELD_EVERY == 0:
            await asyncio.sleep(0)  # a huge tree must not keep other requests waiting
        for child in (await load(entry.hash)).entries:
            following = {
                i if segments[i] == "**" else i + 1
                for i in live
                if segments[i] == "**" or fnmatchcase(child.name, segments[i])
            }
            if child.kind == DIR:
                following = set(closure(following))
            elif done in following or (final_globstar and done - 1 in live):
                following = {done}  # a file ends the walk; a last '**' also takes files
            else:
                continue
            if following:
                pending.append((f"{path}/{child.name}", child, frozenset(following)))
    return sorted(matches.items())
