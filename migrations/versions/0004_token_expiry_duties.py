"""api tokens: expiry, trustee index, the escrow authority's signature

Revision ID: 0004t
Revises: 0003
Create Date: 2026-11-30 08:00:00.000000

(Stands in for the key-custody branch's 0004, which adds the same three columns.)
"""

import sqlalchemy as sa
from alembic import op

revision = "0004t"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("api_tokens", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("api_tokens", sa.Column("trustee_index", sa.Integer(), nullable=True))
    op.add_column("api_tokens", sa.Column("signature", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("signature")
        batch.drop_column("trustee_index")
        batch.drop_column("expires_at")
