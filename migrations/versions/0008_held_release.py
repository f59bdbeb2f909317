"""a release's answer held for its requester until received (issue 26)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 08:30:00

A release used to be lost if the vault died, or the connection broke, after its commit and
before the crops reached the requester: released and audited, the shares wiped, the crops
nowhere. The release now stores its answer sealed to the request's own key (the fetch
secret opens it; the vault cannot) in the same transaction, so the requester can fetch the
same crops again until they confirm receipt or the policy's `redeliver_for` passes, when the
sweeper wipes it. Requests released before this revision hold nothing.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("opening_requests") as t:
        t.add_column(sa.Column("held_release", sa.LargeBinary(), nullable=True))
        t.add_column(sa.Column("held_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("opening_requests") as t:
        t.drop_column("held_until")
        t.drop_column("held_release")
