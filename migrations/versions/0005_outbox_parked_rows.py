"""outbox rows can be parked: parked_at and park_reason on every service's outbox

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 01:35:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OUTBOXES = ("repo_outbox", "scheduler_outbox", "trigger_outbox")


def upgrade() -> None:
    for table in OUTBOXES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True))
            batch_op.add_column(sa.Column("park_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    for table in OUTBOXES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("park_reason")
            batch_op.drop_column("parked_at")
