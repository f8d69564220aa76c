"""infrastructure faults marked on the build, so that identical uploads never replay them

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


# Plain ALTER TABLE, not batch mode: SQLite's batch mode copies build_jobs, which
# build_log_lines refers to (SQLite has ADD and DROP COLUMN since 3.35).


def upgrade() -> None:
    column = sa.Column("infrastructure_fault", sa.Boolean(), nullable=False, server_default=sa.false())
    op.add_column("build_jobs", column)


def downgrade() -> None:
    op.drop_column("build_jobs", "infrastructure_fault")
