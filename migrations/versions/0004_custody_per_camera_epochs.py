"""key custody without a master key: per-camera epochs, token expiry and duties, record ids
unique per camera

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 07:05:00

- key_epochs.id widens to hold "<camera>@<start>" (one key pair per camera and epoch) and
  gains camera_id; sealed_records.epoch_id follows;
- sealed_records' primary key becomes (camera_id, id): one camera can no longer squat an id
  and make another camera's record a permanent conflict;
- api_tokens gain expires_at, trustee_index (which trustee key a trustee token speaks for)
  and signature (the escrow authority's, on privileged roles).
"""

import warnings

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _sqlite_primary_key(columns: list[str]) -> None:
    """SQLite cannot alter a primary key: batch mode copies the table. SQLAlchemy warns that
    the reflected key differs from the new one, which is the point."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Table '_alembic_tmp_sealed_records' specifies")
        with op.batch_alter_table("sealed_records", recreate="always") as b:
            b.create_primary_key("sealed_records_pkey", columns)


def upgrade() -> None:
    with op.batch_alter_table("key_epochs") as b:
        b.alter_column("id", type_=sa.String(length=160), existing_nullable=False)
        b.add_column(sa.Column("camera_id", sa.String(length=64), nullable=True))
    with op.batch_alter_table("sealed_records") as b:
        b.alter_column("epoch_id", type_=sa.String(length=160), existing_nullable=False)
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("sealed_records_pkey", "sealed_records", type_="primary")
        op.create_primary_key("sealed_records_pkey", "sealed_records", ["camera_id", "id"])
    else:
        _sqlite_primary_key(["camera_id", "id"])
    with op.batch_alter_table("api_tokens") as b:
        b.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        b.add_column(sa.Column("trustee_index", sa.Integer(), nullable=True))
        b.add_column(sa.Column("signature", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    """Refused, with one clear line, where it would have to drop data: ids now shared by two
    cameras, or per-camera epoch ids longer than the old column."""
    bind = op.get_bind()
    shared = bind.execute(
        sa.text(
            "SELECT count(*) FROM (SELECT id FROM sealed_records GROUP BY id HAVING count(*) > 1) d"
        )
    ).scalar()
    long_ids = bind.execute(
        sa.text("SELECT count(*) FROM key_epochs WHERE length(id) > 32")
    ).scalar()
    if shared or long_ids:
        raise RuntimeError(
            f"cannot downgrade below 0004: {shared} record id(s) are used by two cameras and "
            f"{long_ids} epoch id(s) are per-camera; the old schema cannot hold them"
        )
    with op.batch_alter_table("api_tokens") as b:
        b.drop_column("signature")
        b.drop_column("trustee_index")
        b.drop_column("expires_at")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint("sealed_records_pkey", "sealed_records", type_="primary")
        op.create_primary_key("sealed_records_pkey", "sealed_records", ["id"])
    else:
        _sqlite_primary_key(["id"])
    with op.batch_alter_table("sealed_records") as b:
        b.alter_column("epoch_id", type_=sa.String(length=32), existing_nullable=False)
    with op.batch_alter_table("key_epochs") as b:
        b.drop_column("camera_id")
        b.alter_column("id", type_=sa.String(length=32), existing_nullable=False)
