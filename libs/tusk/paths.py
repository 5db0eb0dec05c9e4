"""Names, file paths and the ``repo@ref:/path`` address syntax.

A repo or pipeline lives in a project; its qualified name ``project/name`` is its identity
everywhere a name appears. The default project is ``default``, and ``default/x`` is written
``x``, so a name without a project is one in ``default``.

Every path that enters the system goes through :func:`normalize_path`, so a stored path is
always absolute, has no empty, ``.`` or ``..`` segments, and no control characters: there is no
way to address anything outside a commit's tree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tusk.errors import InvalidArgument

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")
COMMIT_ID_RE = re.compile(r"^[0-9a-f]{32}$")
# A ref is a branch or commit id, optionally followed by ancestry: ^, ^N, ~N, repeated.
REF_RE = re.compile(r"^(?P<base>[A-Za-z0-9][A-Za-z0-9_-]{0,62})(?P<ancestry>(?:[\^~][0-9]*)*)$")
ANCESTRY_STEP_RE = re.compile(r"[\^~]([0-9]*)")

DEFAULT_PROJECT = "default"
# A qualified name is stored where a name is (63-character columns): a longer one is refused.
MAX_QUALIFIED_NAME_LENGTH = 63
# Documented in the OpenAPI schemas, with MAX_QUALIFIED_NAME_LENGTH as maxLength (which bounds
# each part too; bounded parts here would make generated names mostly too long in all).
QUALIFIED_NAME_RE = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_-]*/)?[A-Za-z0-9][A-Za-z0-9_-]*$")

MAX_PATH_LENGTH = 4096
MAX_SEGMENT_LENGTH = 255


def validate_name(kind: str, name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise InvalidArgument(
            f"invalid {kind} name {name!r}: use 1-63 letters, digits, '_' or '-', "
            "starting with a letter or digit",
        )
    return name


def validate_project_name(name: str) -> str:
    return validate_name("project", name)


@dataclass(frozen=True)
class QualifiedName:
    """A repo's or pipeline's name split into its project and its name within it."""

    project: str
    name: str

    @property
    def in_default(self) -> bool:
        return self.project == DEFAULT_PROJECT

    def __str__(self) -> str:
        return self.name if self.in_default else f"{self.project}/{self.name}"


def split_project(kind: str, text: str) -> QualifiedName:
    """``p/x`` → (p, x); ``x`` → (default, x); raises :class:`InvalidArgument` naming ``kind``
    (repo, pipeline, …) or the project when either part is not a valid name."""
    project, slash, name = text.rpartition("/")
    if slash and not project:
        raise InvalidArgument(f"invalid {kind} name {text!r}: nothing before '/'")
    if "/" in project:
        raise InvalidArgument(f"invalid {kind} name {text!r}: write 'project/{kind}', with one '/'")
    qualified = QualifiedName(
        validate_project_name(project) if slash else DEFAULT_PROJECT,
        validate_name(kind, name),
    )
    if len(str(qualified)) > MAX_QUALIFIED_NAME_LENGTH:
        raise InvalidArgument(
            f"invalid {kind} name {text!r}: a name with its project ('project/{kind}') may "
            f"have at most {MAX_QUALIFIED_NAME_LENGTH} characters"
        )
    return qualified


def qualified_name(kind: str, text: str) -> str:
    """The normalized qualified name: ``default/x`` → ``x``, ``p/x`` → ``p/x``."""
    return str(split_project(kind, text))


def in_project(project: str, kind: str, name: str) -> str:
    """``name`` (bare or already qualified) resolved in ``project``: a bare name takes the
    project, as a Pachyderm input without ``project`` takes its pipeline's."""
    if "/" in name:
        return qualified_name(kind, name)
    return qualified_name(kind, f"{project}/{name}")


def flat_name(name: str) -> str:
    """A qualified name as one path segment or label-like word: '/' becomes '.', which a
    name cannot contain, so ``p/x`` (``p.x``) never meets a ``p`` directory's ``x``."""
    return name.replace("/", ".")


def validate_branch_name(name: str) -> str:
    validate_name("branch", name)
    if COMMIT_ID_RE.fullmatch(name):
        raise InvalidArgument(
            f"invalid branch name {name!r}: 32 hex digits would read as a commit id"
        )
    return name


def normalize_path(path: str, *, allow_root: bool = True) -> str:
    """Return the canonical form ``/a/b`` of a user path, or raise :class:`InvalidArgument`.

    ``a/b``, ``/a//b/`` and ``/a/./b`` are all ``/a/b``; ``..`` is refused rather than
    resolved, so a path can never climb out of the tree however it is spelt.
    """
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidArgument(f"path is longer than {MAX_PATH_LENGTH} characters")
    if any(ord(c) < 0x20 or c == "\x7f" for c in path):
        raise InvalidArgument(f"path {path!r} contains a control character (NUL, newline, …)")
    if "\\" in path:
        raise InvalidArgument(f"path {path!r} contains a backslash; use '/' between segments")
    segments = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment == "..":
            raise InvalidArgument(f"path {path!r} contains '..'; paths cannot leave the commit")
        if len(segment.encode()) > MAX_SEGMENT_LENGTH:
            raise InvalidArgument(
                f"path segment {segment[:40]!r}… is over {MAX_SEGMENT_LENGTH} bytes"
            )
        segments.append(segment)
    if not segments and not allow_root:
        raise InvalidArgument("a file path is needed, not the root '/'")
    return "/" + "/".join(segments)


def split_path(path: str) -> list[str]:
    """Segments of a normalized path; the root has none."""
    return [s for s in path.split("/") if s]


def parent_path(path: str) -> str:
    head, _, _ = path.rpartition("/")
    return head or "/"


@dataclass(frozen=True)
class Ref:
    """A branch or commit id plus how many generations to walk back (``master^2`` → 2)."""

    base: str
    ancestry: int = 0

    @property
    def is_commit_id(self) -> bool:
        return bool(COMMIT_ID_RE.fullmatch(self.base))

    def __str__(self) -> str:
        return self.base + (f"~{self.ancestry}" if self.ancestry else "")


def parse_ref(text: str) -> Ref:
    match = REF_RE.fullmatch(text)
    if not match:
        raise InvalidArgument(
            f"invalid ref {text!r}: expected a branch name or commit id, optionally followed "
            "by ^, ^N or ~N for ancestors"
        )
    ancestry = sum(int(n) if n else 1 for n in ANCESTRY_STEP_RE.findall(match["ancestry"]))
    return Ref(match["base"], ancestry)


@dataclass(frozen=True)
class Address:
    """``[project/]repo[@ref][:/path]``: the CLI's way of naming a repo, a commit or a file."""

    repo: str
    ref: Ref | None = None
    path: str | None = None

    @property
    def ref_or_default(self) -> Ref:
        return self.ref or Ref("master")

    def __str__(self) -> str:
        text = self.repo
        if self.ref is not None:
            text += f"@{self.ref}"
        if self.path is not None:
            text += f":{self.path}"
        return text


def parse_address(text: str) -> Address:
    """Parse ``repo``, ``repo@branch``, ``repo@<commit>^2`` or any of them with ``:/path``; the
    repo may be qualified by its project (``p/repo@master:/a``)."""
    head, colon, path = text.partition(":")
    repo, at, ref = head.partition("@")
    if at and not ref:
        raise InvalidArgument(f"invalid address {text!r}: nothing after '@'")
    return Address(
        repo=qualified_name("repo", repo),
        ref=parse_ref(ref) if at else None,
        path=normalize_path(path) if colon else None,
    )
