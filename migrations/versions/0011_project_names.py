"""repo: projects, the namespaces of repos and pipelines (``project/name``)

Qualified names are stored in the existing 63-character name columns: a longer one is refused.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 22:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "repo_projects",
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_repo_projects")),
    )


def downgrade() -> None:
    op.drop_table("repo_projects")
