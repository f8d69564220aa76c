"""Prometheus metrics, read at scrape time from the records and the stores (the same numbers
whichever API process answers): builds by status, the queue and why builds wait, step
durations, live previews and their memory, faults retried."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func
from sqlmodel import Session, col, select

from orchestrator.context import Context
from orchestrator.core.estimate import step_durations
from orchestrator.core.exceptions import RuntimeUnavailable
from orchestrator.core.status import Status, StepName
from orchestrator.state.models import BuildJob, as_utc

WAIT_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0)
"""Seconds from upload to a worker taking the build."""

RECENT = 200
"""Step-duration quantiles are over the newest builds that went live, this many at most."""

_WAITS = (
    ("free build slot", "slots"),
    ("per-user limit", "per_user_limit"),
    ("preview port", "ports"),
    ("disk space", "disk"),
    ("resources", "resources"),
    ("Retrying", "retry"),
)


def wait_kind(reason: str | None) -> str:
    """A waiting build's reason as a label: the kind, not the numbers."""
    for words, kind in _WAITS:
        if words in (reason or ""):
            return kind
    return "admission" if not reason else "other"


class ServiceCollector(Collector):
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        with self.ctx.session() as session:
            yield from self.builds(session)
            yield from self.queue(session)
            yield from self.steps(session)
            yield from self.previews(session)

    def builds(self, session: Session) -> Iterator[Metric]:
        counts = dict(session.exec(select(BuildJob.status, func.count()).group_by(BuildJob.status)).all())
        builds = GaugeMetricFamily("orchestrator_builds", "Builds recorded, by status", labels=["status"])
        for status in Status:
            builds.add_metric([status.value], counts.get(status.value, 0))
        yield builds
        retries = session.exec(select(func.sum(BuildJob.attempts - 1)).where(BuildJob.attempts > 1)).one()
        yield CounterMetricFamily(
            "orchestrator_build_retries",
            "Attempts beyond the first (lost workers, engine faults)",
            value=retries or 0,
        )
        infra = session.exec(select(func.count()).where(col(BuildJob.infrastructure_fault).is_(True))).one()
        yield CounterMetricFamily(
            "orchestrator_infrastructure_failures",
            "Builds failed through no fault of their files",
            value=infra,
        )

    def queue(self, session: Session) -> Iterator[Metric]:
        gate = self.ctx.stores.admission
        yield GaugeMetricFamily(
            "orchestrator_queue_waiting", "Builds waiting for admission", value=len(gate.waiting())
        )
        yield GaugeMetricFamily(
            "orchestrator_builds_in_progress", "Builds admitted", value=len(gate.active())
        )
        reasons = session.exec(select(BuildJob.wait_reason).where(BuildJob.status == Status.QUEUED)).all()
        waits = GaugeMetricFamily(
            "orchestrator_queued_builds", "Queued builds, by why they wait", labels=["reason"]
        )
        for kind, count in sorted(Counter(wait_kind(r) for r in reasons).items()):
            waits.add_metric([kind], count)
        yield waits
        started = session.exec(
            select(BuildJob.created_at, BuildJob.started_at).where(col(BuildJob.started_at).is_not(None))
        ).all()
        waited = [max(0.0, (as_utc(s) - as_utc(c)).total_seconds()) for c, s in started if s]
        buckets = [(str(b), sum(1 for w in waited if w <= b)) for b in WAIT_BUCKETS] + [("+Inf", len(waited))]
        yield HistogramMetricFamily(
            "orchestrator_queue_wait_seconds",
            "From upload to a worker taking the build",
            buckets=buckets,
            sum_value=sum(waited),
        )

    def steps(self, session: Session) -> Iterator[Metric]:
        recent = session.exec(
            select(BuildJob.steps)
            .where(col(BuildJob.status).in_([Status.RUNNING, Status.STOPPED]))
            .order_by(col(BuildJob.created_at).desc())
            .limit(RECENT)
        ).all()
        durations: dict[str, list[float]] = {}
        for record in recent:
            for name, seconds in step_durations(record).items():
                durations.setdefault(name, []).append(seconds)
        steps = GaugeMetricFamily(
            "orchestrator_step_seconds",
            f"Step durations over the newest {RECENT} builds that went live",
            labels=["step", "quantile"],
        )
        for step in StepName:
            values = durations.get(step)
            if values:
                ninetieth = statistics.quantiles(values, n=10)[-1] if len(values) > 1 else values[0]
                steps.add_metric([step.value, "0.5"], statistics.median(values))
                steps.add_metric([step.value, "0.9"], ninetieth)
        yield steps

    def previews(self, session: Session) -> Iterator[Metric]:
        live = session.exec(
            select(BuildJob.host_id, BuildJob.container_id).where(BuildJob.status == Status.RUNNING)
        ).all()
        yield GaugeMetricFamily("orchestrator_previews_live", "Previews live (awake)", value=len(live))
        asleep = session.exec(select(func.count()).where(BuildJob.status == Status.SLEEPING)).one()
        yield GaugeMetricFamily(
            "orchestrator_previews_sleeping", "Previews asleep (their containers stopped)", value=asleep
        )
        yield self.memory(live)

    def memory(self, live: Sequence[tuple[str | None, str | None]]) -> Metric:
        """What the live previews use, per host, each read from its own host's engine (a host
        whose engine cannot be reached is left out of this scrape)."""
        family = GaugeMetricFamily(
            "orchestrator_previews_memory_bytes", "Memory the live previews use", labels=["host"]
        )
        by_host: dict[str, list[str]] = {}
        for host, container in live:
            if container:
                by_host.setdefault(host or self.ctx.host_id, []).append(container)
        for host, containers in sorted(by_host.items()):
            try:
                runtime = self.ctx.runtime_for(host)
                family.add_metric([host], sum(runtime.memory_used(c) or 0 for c in containers))
            except RuntimeUnavailable:
                continue
        return family
