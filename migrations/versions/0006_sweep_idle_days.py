"""idle retention sweeps counted per day (issue 25)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 20:30:00

A sweep that erased, shredded, expired and changed nothing writes no audit entry of its own;
sweep_idle_days counts such runs per UTC day, and the first sweep after the day ended writes
that day's count as one `sweep.idle` entry (`entry` is its id).
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sweep_idle_days",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entry", sa.Integer(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("sweep_idle_days")
