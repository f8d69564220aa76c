"""What one gc run did, and what every part of a run shares."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from orchestrator.context import Context
from orchestrator.core.expiry import Policy
from orchestrator.state.models import BuildJob


@dataclass
class Action:
    action: str
    target: str
    reason: str
    memory_bytes: int | None = None
    disk_bytes: int | None = None
    port: int | None = None


@dataclass
class Sleeper:
    """A sleeping preview gc kept: what it holds while asleep (disk only, and its port)."""

    build_id: str
    port: int | None
    disk_bytes: int | None
    asleep_seconds: float
    removed_in_seconds: float


@dataclass
class Report:
    actions: list[Action] = field(default_factory=list)
    sleeping: list[Sleeper] = field(default_factory=list)
    previews_checked: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "actions": [asdict(a) for a in self.actions],
            "sleeping": [
                {
                    "buildId": s.build_id,
                    "port": s.port,
                    "diskBytes": s.disk_bytes,
                    "asleepSeconds": round(s.asleep_seconds, 1),
                    "removedInSeconds": round(s.removed_in_seconds, 1),
                }
                for s in self.sleeping
            ],
            "previewsChecked": self.previews_checked,
            "seconds": round(self.seconds, 3),
            "freed": {
                "memoryBytes": sum(a.memory_bytes or 0 for a in self.actions),
                "diskBytes": sum(a.disk_bytes or 0 for a in self.actions),
                "ports": sorted({a.port for a in self.actions if a.port is not None}),
            },
        }


def _status(ctx: Context, build_id: str) -> str | None:
    with ctx.session() as session:
        build = session.get(BuildJob, build_id)
        return build.status if build else None


class Collection:
    """One gc run's context, policy and report."""

    def __init__(self, ctx: Context, policy: Policy, dry_run: bool, scheduled: bool = False) -> None:
        self.ctx, self.policy, self.dry_run = ctx, policy, dry_run
        self.settings, self.runtime = ctx.settings, ctx.runtime
        self.scheduled = scheduled
        """Run by the service itself (every minute): costly measurements only now and then."""
        self.report = Report()
        self.stopping: set[str] = set()
        """Builds whose preview this run stops (or, dry, would stop)."""

    def add(self, action: str, target: str, reason: str, **freed: int | None) -> None:
        self.report.actions.append(Action(action, target, reason, **freed))
