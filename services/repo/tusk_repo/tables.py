"""The repo service's tables (prefix ``repo_``).

A commit's file tree is a Merkle tree: each directory is a row of ``repo_trees`` keyed by the
hash of its entries, shared by every commit that has the same directory. A new commit starts
from its parent's root hash, so starting one costs a row whatever the tree's size. Writes to an
open commit go to ``repo_staged``; finishing merges them into new tree nodes (only the
directories on changed paths are rewritten) and clears the staged rows.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from tusk.db import Base, UTCDateTime
from tusk.events.outbox import outbox_table

BigId = BigInteger().with_variant(Integer(), "sqlite")


class ProjectRow(Base):
    """A project other than ``default`` (which always exists and has no row); its repos are
    those named ``<project>/…``."""

    __tablename__ = "repo_projects"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RepoRow(Base):
    __tablename__ = "repo_repos"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # The pipeline whose output this repo is: only its jobs write to it.
    owner_pipeline: Mapped[str | None] = mapped_column(String(63))
    # Retention on branches other than master: commits older than keep_days are dropped
    # unless among a branch's keep_last newest (either rule alone when the other is unset).
    keep_days: Mapped[int | None] = mapped_column(Integer)
    keep_last: Mapped[int | None] = mapped_column(Integer)


class BranchRow(Base):
    __tablename__ = "repo_branches"

    repo_id: Mapped[int] = mapped_column(
        ForeignKey("repo_repos.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    # The last finished commit; readers of repo@branch always see a finished snapshot.
    head: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # A protected branch moves only by merges.
    protected: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class CommitRow(Base):
    __tablename__ = "repo_commits"
    __table_args__ = (
        # At most one open commit per branch, enforced by the database against racing starts.
        Index(
            "uq_repo_commits_open_branch",
            "repo_id",
            "branch",
            unique=True,
            postgresql_where=text("state = 'open'"),
            sqlite_where=text("state = 'open'"),
        ),
        Index("ix_repo_commits_repo_seq", "repo_id", "seq"),
        Index("ix_repo_commits_parent", "parent"),
    )

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repo_repos.id", ondelete="CASCADE"))
    branch: Mapped[str | None] = mapped_column(String(63))
    parent: Mapped[str | None] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    base_tree: Mapped[str] = mapped_column(String(64))
    root_tree: Mapped[str | None] = mapped_column(String(64))
    global_id: Mapped[str] = mapped_column(String(32), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    file_count: Mapped[int | None] = mapped_column(BigInteger)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # A merge commit's second parent: the head of the branch merged in.
    merge_parent: Mapped[str | None] = mapped_column(String(32))
    # Who opened the commit when that matters: "pipeline:NAME" or "admin: REASON".
    opened_by: Mapped[str | None] = mapped_column(Text)


class ProvenanceRow(Base):
    """One input commit of a commit (what it was derived from)."""

    __tablename__ = "repo_provenance"

    commit_id: Mapped[str] = mapped_column(
        ForeignKey("repo_commits.id", ondelete="CASCADE"), primary_key=True
    )
    input_commit: Mapped[str] = mapped_column(String(32), primary_key=True, index=True)
    input_repo: Mapped[str] = mapped_column(String(63), index=True)


class StagedRow(Base):
    """A change to an open commit: ``put`` a file at ``path`` or ``del`` whatever is there."""

    __tablename__ = "repo_staged"

    commit_id: Mapped[str] = mapped_column(
        ForeignKey("repo_commits.id", ondelete="CASCADE"), primary_key=True
    )
    path: Mapped[str] = mapped_column(Text, primary_key=True)
    op: Mapped[str] = mapped_column(String(3), primary_key=True)
    file_hash: Mapped[str | None] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger, default=0)


class FileRow(Base):
    """A stored file's content: its chunk list. Shared by every commit holding that content."""

    __tablename__ = "repo_files"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    chunks: Mapped[bytes] = mapped_column(LargeBinary)


class TreeRow(Base):
    """A directory node of the Merkle tree, keyed by the hash of its encoded entries."""

    __tablename__ = "repo_trees"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    entries: Mapped[bytes] = mapped_column(LargeBinary)
    # What garbage collection needs, readable without decoding the entries (``trees.node_refs``):
    # the subdirectories' hashes, 32 bytes each, and each file's key (the first 8 bytes of its
    # hash). NULL on a node written before they were kept; the collector then decodes it.
    subdirs: Mapped[bytes | None] = mapped_column(LargeBinary)
    file_keys: Mapped[bytes | None] = mapped_column(LargeBinary)


class TagRow(Base):
    """An immutable name for a commit, usable wherever a ref is."""

    __tablename__ = "repo_tags"

    repo_id: Mapped[int] = mapped_column(
        ForeignKey("repo_repos.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    commit_id: Mapped[str] = mapped_column(String(32), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


outbox = outbox_table("repo", Base.metadata)
from tusk_repo.auth_tables import AuditRow, RoleRow, TokenRow  # noqa: E402,F401  (registered with the metadata)
