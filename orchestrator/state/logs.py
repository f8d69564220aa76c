"""A build's log as rows, only ever appended: a batch of lines is one INSERT, reading the
newest lines is one indexed query, and each build keeps its newest ``kept`` lines (older ones
are pruned in one DELETE now and then, not rewritten)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete
from sqlmodel import Session, col, select

from orchestrator.state.models import BuildLogLine


def append(session: Session, build_id: str, lines: Sequence[str]) -> None:
    session.add_all([BuildLogLine(build_id=build_id, line=line) for line in lines])


def tail(session: Session, build_id: str, count: int) -> list[str]:
    """The build's newest ``count`` lines, oldest first."""
    newest = session.exec(
        select(BuildLogLine.line)
        .where(BuildLogLine.build_id == build_id)
        .order_by(col(BuildLogLine.id).desc())
        .limit(count)
    ).all()
    return list(reversed(newest))


def prune(session: Session, build_id: str, kept: int) -> None:
    """Delete all but the build's newest ``kept`` lines."""
    boundary = session.exec(
        select(BuildLogLine.id)
        .where(BuildLogLine.build_id == build_id)
        .order_by(col(BuildLogLine.id).desc())
        .offset(kept)
        .limit(1)
    ).first()
    if boundary is not None:
        session.exec(  # type: ignore[call-overload]
            delete(BuildLogLine).where(
                col(BuildLogLine.build_id) == build_id, col(BuildLogLine.id) <= boundary
            )
        )
