"""The schema's migrations on a real SQLite file: the log lines leave the JSON column for rows
of their own, and nothing is lost either way."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from orchestrator.state.schema import alembic_config


def test_logs_kept_as_json_become_rows_and_come_back(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'orchestrator.db'}"
    config = alembic_config(url)
    command.upgrade(config, "0004")
    engine = sa.create_engine(url)
    with engine.begin() as db:
        db.execute(
            sa.text(
                "INSERT INTO api_tokens (name, role, token_hash, created_at) "
                "VALUES ('a', 'user', 'h', '2026-01-01')"
            )
        )
        db.execute(
            sa.text(
                "INSERT INTO websites (id, owner_id, name, type, created_at) "
                "VALUES ('w', 1, 'n', 'static', '2026-01-01')"
            )
        )
        db.execute(
            sa.text(
                "INSERT INTO build_jobs (id, website_id, owner_id, project_type, status, priority, "
                "progress, logs, steps, created_at, attempts, updated_at, rebuild) VALUES ('b', 'w', 1, "
                """'static', 'running', 0, 100, '["one", "two"]', '{}', '2026-01-01', 1, '2026-01-01', 0)"""
            )
        )
    command.upgrade(config, "head")
    with engine.begin() as db:
        rows = list(db.execute(sa.text("SELECT build_id, line FROM build_log_lines ORDER BY id")))
        columns = [row[1] for row in db.execute(sa.text("PRAGMA table_info(build_jobs)"))]
    assert rows == [("b", "one"), ("b", "two")] and "logs" not in columns
    assert "infrastructure_fault" in columns
    command.downgrade(config, "0004")
    with engine.begin() as db:
        columns = [row[1] for row in db.execute(sa.text("PRAGMA table_info(build_jobs)"))]
    assert "logs" in columns
    engine.dispose()
