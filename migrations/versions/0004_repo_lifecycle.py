"""repo lifecycle: tags, output repo owners, protected branches, merge parents, retention

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 01:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("repo_repos", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner_pipeline", sa.String(length=63), nullable=True))
        batch_op.add_column(sa.Column("keep_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("keep_last", sa.Integer(), nullable=True))
    with op.batch_alter_table("repo_branches", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("protected", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("repo_commits", schema=None) as batch_op:
        batch_op.add_column(sa.Column("merge_parent", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("opened_by", sa.Text(), nullable=True))
        batch_op.create_index("ix_repo_commits_parent", ["parent"], unique=False)
    op.create_table(
        "repo_tags",
        sa.Column("repo_id", BigId, nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("commit_id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["repo_id"],
            ["repo_repos.id"],
            name=op.f("fk_repo_tags_repo_id_repo_repos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repo_id", "name", name=op.f("pk_repo_tags")),
    )
    with op.batch_alter_table("repo_tags", schema=None) as batch_op:
        batch_op.create_index("ix_repo_tags_commit_id", ["commit_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("repo_tags", schema=None) as batch_op:
        batch_op.drop_index("ix_repo_tags_commit_id")
    op.drop_table("repo_tags")
    with op.batch_alter_table("repo_commits", schema=None) as batch_op:
        batch_op.drop_index("ix_repo_commits_parent")
        batch_op.drop_column("opened_by")
        batch_op.drop_column("merge_parent")
    with op.batch_alter_table("repo_branches", schema=None) as batch_op:
        batch_op.drop_column("protected")
    with op.batch_alter_table("repo_repos", schema=None) as batch_op:
        batch_op.drop_column("keep_last")
        batch_op.drop_column("keep_days")
        batch_op.drop_column("owner_pipeline")
