"""warrants, opening requests, approvals

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 16:05:11.285095
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "warrants",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("case_ref", sa.String(length=200), nullable=False),
        sa.Column("legal_basis", sa.Text(), nullable=False),
        sa.Column("judge", sa.String(length=200), nullable=False),
        sa.Column("judge_token_id", sa.String(length=36), nullable=False),
        sa.Column("cameras", sa.Text(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("max_records", sa.Integer(), nullable=True),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("signature", sa.LargeBinary(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "opening_requests",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("warrant_id", sa.String(length=36), nullable=False),
        sa.Column("requester_token_id", sa.String(length=36), nullable=False),
        sa.Column("requester", sa.String(length=200), nullable=False),
        sa.Column("record_ids", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_count", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["warrant_id"],
            ["warrants.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_requests_warrant", "opening_requests", ["warrant_id"], unique=False)
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("request_id", sa.String(length=36), nullable=False),
        sa.Column("trustee_token_id", sa.String(length=36), nullable=False),
        sa.Column("trustee", sa.String(length=200), nullable=False),
        sa.Column("share_index", sa.Integer(), nullable=False),
        sa.Column("sealed_share", sa.LargeBinary(), nullable=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["opening_requests.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id", "share_index", name="uq_approval_share"),
        sa.UniqueConstraint("request_id", "trustee_token_id", name="uq_approval_trustee"),
    )


def downgrade() -> None:
    op.drop_table("approvals")
    op.drop_index("ix_requests_warrant", table_name="opening_requests")
    op.drop_table("opening_requests")
    op.drop_table("warrants")
