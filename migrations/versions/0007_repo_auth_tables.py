"""repo service identity tables: tokens (hashed), role grants, audit log

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 01:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "repo_auth_tokens",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("identity", sa.String(length=128), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("job", sa.String(length=32), nullable=True),
        sa.Column("scope", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_repo_auth_tokens")),
    )
    op.create_index(
        op.f("ix_repo_auth_tokens_identity"), "repo_auth_tokens", ["identity"], unique=False
    )
    op.create_index(op.f("ix_repo_auth_tokens_job"), "repo_auth_tokens", ["job"], unique=False)
    op.create_table(
        "repo_auth_roles",
        sa.Column("identity", sa.String(length=128), nullable=False),
        sa.Column("resource", sa.String(length=80), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("granted_by", sa.String(length=128), nullable=False),
        sa.Column("granted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("identity", "resource", name=op.f("pk_repo_auth_roles")),
    )
    op.create_table(
        "repo_auth_audit",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("identity", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("resource", sa.String(length=80), nullable=True),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_repo_auth_audit")),
    )
    op.create_index(op.f("ix_repo_auth_audit_at"), "repo_auth_audit", ["at"], unique=False)
    op.create_index(
        op.f("ix_repo_auth_audit_resource"), "repo_auth_audit", ["resource"], unique=False
    )
    op.create_index(
        "ix_repo_auth_audit_identity_seq", "repo_auth_audit", ["identity", "seq"], unique=False
    )


def downgrade() -> None:
    op.drop_table("repo_auth_audit")
    op.drop_table("repo_auth_roles")
    op.drop_table("repo_auth_tokens")
