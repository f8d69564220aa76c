"""Is the service able to build? Each part builds need, checked for real: the database, Redis,
the Docker engine and the build image, and live workers. Healthy only when all are."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import text

from orchestrator.context import Context


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Health:
    checks: list[Check]
    workers: dict[str, float] = field(default_factory=dict)
    """Live workers, and how many seconds ago each was last seen."""

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def down(self) -> list[str]:
        return [c.name for c in self.checks if not c.ok]

    def as_dict(self) -> dict[str, object]:
        return {
            "status": "ok" if self.ok else "unavailable",
            "down": self.down,
            "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in self.checks},
            "workers": {name: round(ago, 1) for name, ago in sorted(self.workers.items())},
        }


def _check(name: str, probe: Callable[[], str]) -> Check:
    try:
        return Check(name, True, probe())
    except Exception as exc:  # noqa: BLE001 - whatever fails, the check says so
        return Check(name, False, str(exc) or type(exc).__name__)


def check_health(ctx: Context) -> Health:
    def database() -> str:
        with ctx.session() as session:
            session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        return "ok"

    def redis() -> str:
        ctx.check_redis()
        return "ok"

    def engine() -> str:
        ctx.runtime.check()  # the engine answers and the build image is there
        return f"ok ({ctx.settings.node_image})"

    seen: dict[str, float] = {}

    def workers() -> str:
        now = time.time()
        seen.update({name: now - at for name, at in ctx.stores.signals.workers().items()})
        if not seen:
            raise RuntimeError("no build worker is running (start one with 'orchestrator worker')")
        return f"{len(seen)} live, last seen {min(seen.values()):.1f} s ago"

    checks = [
        _check("database", database),
        _check("redis", redis),
        _check("docker", engine),
        _check("workers", workers),
    ]
    return Health(checks, seen)
