"""tombstones of erased records (issue 26: an erasure sticks)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 10:00:00

The retention sweep leaves one row per erased record (camera, record id, when), in the same
transaction as the erasure, and ingest answers a record re-sent after its erasure as
received and erased instead of storing it again. No crop, ciphertext or metadata: only what
the `sweep.erase` audit entry already names. Records erased before this revision get their
tombstone from those entries (those that name the camera, i.e. written since issue 24), so a
camera still retrying one across the upgrade is answered the same; a record erased and
already stored again (the bug this fixes) keeps its row and gets no tombstone.
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "erased_records",
        sa.Column("camera_id", sa.String(64), primary_key=True),
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
    )
    bind = op.get_bind()
    stored = set(bind.execute(sa.text("SELECT camera_id, id FROM sealed_records")).all())
    tombs: dict[tuple[str, str], object] = {}
    log = sa.table(  # typed, so `at` reads back as a datetime on SQLite too
        "audit_log",
        sa.column("id", sa.Integer),
        sa.column("at", sa.DateTime(timezone=True)),
        sa.column("action", sa.String),
        sa.column("detail", sa.Text),
    )
    erasures = bind.execute(
        sa.select(log.c.at, log.c.detail).where(log.c.action == "sweep.erase").order_by(log.c.id)
    )
    for at, detail in erasures:
        for row in json.loads(detail).get("rows") or []:
            key = (row.get("camera"), row.get("record"))
            if None not in key and key not in stored:
                tombs[key] = at  # the last erasure of a record stored twice
    table = sa.table(
        "erased_records",
        sa.column("camera_id", sa.String),
        sa.column("id", sa.String),
        sa.column("erased_at", sa.DateTime(timezone=True)),
    )
    if tombs:
        op.bulk_insert(
            table, [{"camera_id": c, "id": r, "erased_at": at} for (c, r), at in tombs.items()]
        )


def downgrade() -> None:
    op.drop_table("erased_records")
