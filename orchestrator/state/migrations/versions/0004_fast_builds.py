"""fast builds: rebuild flag, reuse of identical builds, dependency-cache key

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("build_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rebuild", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("reused_from", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column("deps_key", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.create_index(batch_op.f("ix_build_jobs_files_hash"), ["files_hash"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("build_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_build_jobs_files_hash"))
        batch_op.drop_column("deps_key")
        batch_op.drop_column("reused_from")
        batch_op.drop_column("rebuild")
