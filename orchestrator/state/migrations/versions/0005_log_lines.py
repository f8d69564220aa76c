"""append-only build logs: one row per line instead of a JSON list rewritten on every flush

Revision ID: 0005
Revises: 0004
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    kept = {
        build_id: json.loads(logs) if isinstance(logs, str) else (logs or [])
        for build_id, logs in connection.execute(sa.text("SELECT id, logs FROM build_jobs"))
    }
    # Drop the column before anything refers to build_jobs: SQLite's batch mode copies the table.
    with op.batch_alter_table("build_jobs", schema=None) as batch_op:
        batch_op.drop_column("logs")
    lines = op.create_table(
        "build_log_lines",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("build_id", sa.String(), sa.ForeignKey("build_jobs.id"), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
    )
    op.create_index("ix_build_log_lines_build_id", "build_log_lines", ["build_id"])
    rows = [{"build_id": build_id, "line": line} for build_id, logs in kept.items() for line in logs]
    if rows:
        op.bulk_insert(lines, rows)


def downgrade() -> None:
    op.drop_index("ix_build_log_lines_build_id", table_name="build_log_lines")
    op.drop_table("build_log_lines")
    with op.batch_alter_table("build_jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("logs", sa.JSON(), nullable=False, server_default="[]"))
