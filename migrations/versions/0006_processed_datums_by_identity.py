"""processed datums are found by datum identity, not by pipeline version

A datum an earlier version processed is skipped when the new version's transform, image and
inputs are the same (only parallelism, resources or the description changed).

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("scheduler_processed_datums", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("identity", sa.String(length=64), server_default="", nullable=False)
        )
        batch_op.create_index(
            "ix_scheduler_processed_datums_identity",
            ["pipeline", "identity", "datum"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("scheduler_processed_datums", schema=None) as batch_op:
        batch_op.drop_index("ix_scheduler_processed_datums_identity")
        batch_op.drop_column("identity")
