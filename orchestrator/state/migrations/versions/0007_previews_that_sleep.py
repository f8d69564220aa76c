"""previews that sleep and wake, share links, live edits

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# Plain ALTER TABLE, not batch mode (see 0006).


def upgrade() -> None:
    op.add_column("build_jobs", sa.Column("slept_at", sa.DateTime(), nullable=True))
    op.add_column("build_jobs", sa.Column("woke_at", sa.DateTime(), nullable=True))
    op.add_column("build_jobs", sa.Column("edits", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("build_jobs", sa.Column("edit_check", sa.JSON(), nullable=True))
    op.add_column("websites", sa.Column("preview_access", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.create_table(
        "share_links",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("website_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["website_id"], ["websites.id"]),
        sa.ForeignKeyConstraint(["created_by"], ["api_tokens.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_share_links_website_id", "share_links", ["website_id"])


def downgrade() -> None:
    op.drop_index("ix_share_links_website_id", table_name="share_links")
    op.drop_table("share_links")
    op.drop_column("websites", "preview_access")
    for column in ("edit_check", "edits", "woke_at", "slept_at"):
        op.drop_column("build_jobs", column)
