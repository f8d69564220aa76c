"""Hosts in the records: each host's workers beat its record (Redis says who is alive, the
database keeps every host seen), the overview the API and ``orchestrator hosts`` show, and the
previews of a host whose workers are all gone, stopped with the reason ``host-lost``.

A lost host's builds in progress need nothing here: their heartbeats stopped with its workers,
so any worker's dispatch round queues them again, and they are admitted to a host that lives.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select, update

from orchestrator.context import Context
from orchestrator.core.exceptions import OrchestratorError
from orchestrator.core.expiry import StopReason
from orchestrator.core.hosts import HostInfo, lost_hosts, overlapping_ranges
from orchestrator.core.status import PREVIEW, Status
from orchestrator.state.models import BuildJob, Host, as_utc, utcnow
from orchestrator.state.previews import stop_preview

log = logging.getLogger(__name__)

RECORD_SECONDS = 30
"""How often a host's row in the database is brought up to date (Redis has every beat)."""


def this_host(ctx: Context) -> HostInfo:
    """What this process's host says of itself: its address, its engine, its capacity."""
    s = ctx.settings
    cpus, memory = ctx.runtime.capacity()
    return HostInfo(
        id=ctx.host_id,
        address=s.reached_at,
        engine=s.engine_url,
        public_host=s.public_host,
        memory_bytes=memory,
        cpus=cpus,
        port_range=(s.port_range_start, s.port_range_end),
    )


def register(ctx: Context, info: HostInfo) -> list[str]:
    """A worker's host at its start: beaten and recorded. The first host ever registered takes
    over the builds and Redis keys from before hosts existed. Returns the warnings to show
    (another host on this address whose preview ports overlap)."""
    with ctx.session() as session:
        first = session.exec(select(func.count()).select_from(Host)).one() == 0
    record(ctx, info)
    if first:
        with ctx.session() as session:
            session.exec(update(BuildJob).where(col(BuildJob.host_id).is_(None)).values(host_id=info.id))  # type: ignore[call-overload]
        ctx.stores.hosts.adopt_single_host_keys(info.id)
    others = list(ctx.stores.hosts.live().values())
    return [
        f"host {other} publishes preview ports on {info.address} too, and its range overlaps this "
        f"host's {info.port_range[0]}-{info.port_range[1]}: give each host its own range"
        for other in overlapping_ranges(info, others)
    ]


def record(ctx: Context, info: HostInfo) -> None:
    """Beat the host's record into Redis and write it to its row (seen now, not lost). The
    workers of a new host start together: the row is inserted by one of them, and any other
    that finds it inserted meanwhile updates it."""
    ctx.stores.hosts.beat(info)
    said = {**_columns(info), "last_seen": utcnow(), "lost_at": None}
    if _update(ctx, info.id, said):
        return
    try:
        with ctx.session() as session:
            session.add(Host(id=info.id, **said))
    except IntegrityError:  # another worker of the host inserted it first
        _update(ctx, info.id, said)


def _update(ctx: Context, host_id: str, said: dict[str, Any]) -> bool:
    """Write ``said`` to the host's row; False when it has none."""
    with ctx.session() as session:
        found = session.exec(update(Host).where(col(Host.id) == host_id).values(**said))  # type: ignore[call-overload]
        return bool(found.rowcount)


@dataclass
class Beater:
    """A worker's beats of its host: Redis at every call, the database every RECORD_SECONDS."""

    ctx: Context
    info: HostInfo
    recorded: float = 0.0

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self.recorded >= RECORD_SECONDS:
            record(self.ctx, self.info)
            self.recorded = now
        else:
            self.ctx.stores.hosts.beat(self.info)


@dataclass(frozen=True)
class HostView:
    """One host as ``GET /api/hosts`` shows it: what it last said, and what is on it."""

    record: HostInfo
    state: str
    """"live" (a worker beat within HOST_TTL), "lost" (its previews were stopped) or
    "silent" (no beat, not yet declared lost)."""
    running: int
    sleeping: int
    building: int
    admission: str | None
    """What its workers' last dispatch round found: "room for a build", or why a build would
    wait there (core.resources.shortage); None when none of its workers reported one lately
    (none is free to take a build, or none runs)."""
    first_seen: datetime
    last_seen: datetime
    lost_at: datetime | None

    @property
    def id(self) -> str:
        return self.record.id

    def as_json(self) -> dict[str, Any]:
        """As GET /api/hosts answers it (api.schemas.HostPublic): flat, camelCase, ISO times."""
        times = {"first_seen": self.first_seen, "last_seen": self.last_seen, "lost_at": self.lost_at}
        fields = {
            **self.record.as_json(),
            "state": self.state,
            "running": self.running,
            "sleeping": self.sleeping,
            "building": self.building,
            "admission": self.admission,
            **{name: moment.isoformat() if moment else None for name, moment in times.items()},
        }
        return {_camel(name): value for name, value in fields.items()}


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def _columns(info: HostInfo) -> dict[str, Any]:
    """A host's record as its row's columns (the inverse of _said)."""
    return {
        "address": info.address,
        "engine": info.engine,
        "public_host": info.public_host,
        "memory_bytes": info.memory_bytes,
        "cpus": info.cpus,
        "port_range_start": info.port_range[0],
        "port_range_end": info.port_range[1],
    }


def _said(row: Host) -> HostInfo:
    """What a host said at its last beat that reached the database."""
    return HostInfo(
        id=row.id,
        address=row.address,
        engine=row.engine,
        public_host=row.public_host,
        memory_bytes=row.memory_bytes,
        cpus=row.cpus,
        port_range=(row.port_range_start, row.port_range_end),
    )


def overview(ctx: Context) -> list[HostView]:
    """Every host seen, live ones first (as they say now), with its previews and builds counted."""
    live = ctx.stores.hosts.live()
    with ctx.session() as session:
        rows = session.exec(select(Host)).all()
        counts = session.exec(
            select(BuildJob.host_id, BuildJob.status, func.count())
            .where(col(BuildJob.status).in_([Status.RUNNING, Status.SLEEPING, Status.BUILDING]))
            .group_by(BuildJob.host_id, BuildJob.status)
        ).all()
    counted: dict[tuple[str | None, str], int] = {(host, status): n for host, status, n in counts}
    views = [
        HostView(
            record=live.get(row.id) or _said(row),
            state="live" if row.id in live else ("lost" if row.lost_at else "silent"),
            running=counted.get((row.id, Status.RUNNING.value), 0),
            sleeping=counted.get((row.id, Status.SLEEPING.value), 0),
            building=counted.get((row.id, Status.BUILDING.value), 0),
            admission=_admission(ctx.stores.hosts.room(row.id)),
            first_seen=as_utc(row.first_seen),
            last_seen=as_utc(row.last_seen),
            lost_at=as_utc(row.lost_at) if row.lost_at else None,
        )
        for row in rows
    ]
    return sorted(views, key=lambda v: (v.state != "live", v.id))


def _admission(room: tuple[bool, str | None]) -> str | None:
    known, shortage = room
    return (shortage or "room for a build") if known else None


def stop_lost_hosts(ctx: Context) -> dict[str, list[str]]:
    """Hosts none of whose workers beat for HOST_TTL: their previews (awake or asleep) are
    stopped with ``host-lost`` and the host is marked lost. Returns host id → builds stopped.
    A host that beats again is live again (register clears ``lost_at``)."""
    with ctx.session() as session:
        known = set(session.exec(select(Host.id).where(col(Host.lost_at).is_(None))).all())
    gone = lost_hosts(known, set(ctx.stores.hosts.live()), ctx.stores.signals.kept_for())
    stopped: dict[str, list[str]] = {}
    for host_id in sorted(gone):
        with ctx.session() as session:
            previews = session.exec(
                select(BuildJob.id).where(BuildJob.host_id == host_id, col(BuildJob.status).in_(PREVIEW))
            ).all()
        stopped[host_id] = []
        detail = f"every worker of host {host_id} stopped beating: its previews cannot be reached"
        for build_id in previews:
            try:
                if stop_preview(ctx, build_id, StopReason.HOST_LOST, detail) is not None:
                    stopped[host_id].append(build_id)
            except OrchestratorError as exc:  # the next look tries again
                log.warning("could not stop preview %s of lost host %s: %s", build_id, host_id, exc)
        with ctx.session() as session:
            row = session.get(Host, host_id)
            if row is not None and row.lost_at is None and host_id not in ctx.stores.hosts.live():
                row.lost_at = utcnow()
                session.add(row)
        log.warning("host %s is lost: stopped %d previews", host_id, len(stopped[host_id]))
    return stopped
