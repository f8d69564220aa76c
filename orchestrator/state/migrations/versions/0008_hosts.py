"""many hosts: the hosts table, and the host each build ran on

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# Plain ALTER TABLE, not batch mode (see 0006).


def upgrade() -> None:
    op.create_table(
        "hosts",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("address", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("engine", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("public_host", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("memory_bytes", sa.BigInteger(), nullable=False),
        sa.Column("cpus", sa.Integer(), nullable=False),
        sa.Column("port_range_start", sa.Integer(), nullable=False),
        sa.Column("port_range_end", sa.Integer(), nullable=False),
        sa.Column("first_seen", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.Column("lost_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    # A build recorded before hosts were keeps NULL: it ran on the one host there was, which
    # the first host to register takes over (orchestrator.state.hosts.register).
    op.add_column("build_jobs", sa.Column("host_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.create_index("ix_build_jobs_host_id", "build_jobs", ["host_id"])
    op.add_column("build_jobs", sa.Column("placement", sqlmodel.sql.sqltypes.AutoString(), nullable=True))


def downgrade() -> None:
    op.drop_column("build_jobs", "placement")
    op.drop_index("ix_build_jobs_host_id", table_name="build_jobs")
    op.drop_column("build_jobs", "host_id")
    op.drop_table("hosts")
