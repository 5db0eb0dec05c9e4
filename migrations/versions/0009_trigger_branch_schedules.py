"""trigger service: schedules of cron branch triggers (pfs.trigger.cron_spec)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 09:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "trigger_branch_schedules",
        sa.Column("pipeline", sa.String(length=63), nullable=False),
        sa.Column("input_name", sa.String(length=63), nullable=False),
        sa.Column("repo", sa.String(length=63), nullable=False),
        sa.Column("branch", sa.String(length=255), nullable=False),
        sa.Column("watched", sa.String(length=255), nullable=False),
        sa.Column("spec", sa.String(length=255), nullable=False),
        sa.Column("next_tick_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("firing", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(
            ["pipeline"],
            ["trigger_pipelines.name"],
            name=op.f("fk_trigger_branch_schedules_pipeline_trigger_pipelines"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "pipeline", "input_name", name=op.f("pk_trigger_branch_schedules")
        ),
    )


def downgrade() -> None:
    op.drop_table("trigger_branch_schedules")
