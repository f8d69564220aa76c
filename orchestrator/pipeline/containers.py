"""The containers of one build run: created with its environment and registry access, its
steps started and followed until a verdict, and everything it made removed on failure."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from redis.exceptions import RedisError

from orchestrator.adapters.network import RegistryAccess
from orchestrator.adapters.runtime import ContainerSpec
from orchestrator.adapters.workspace import pack_for_container
from orchestrator.context import Context
from orchestrator.core import defaults
from orchestrator.core.disk_quota import DiskQuota
from orchestrator.core.exceptions import (
    BuildFailed,
    OrchestratorError,
    RegistryUnreachable,
    RuntimeUnavailable,
)
from orchestrator.core.failures import label
from orchestrator.core.follower import Follower, Log, Passed, Probe, Verdict
from orchestrator.core.ports import attempt_owner
from orchestrator.core.status import Outcome, StepName
from orchestrator.core.steps import Steps
from orchestrator.pipeline.step_runner import Fault, StepRunner
from orchestrator.state.recorder import BuildRecorder


class Cancelled(Exception):
    """Raised inside a build when someone asked to cancel it."""

    def __init__(self, by: str) -> None:
        super().__init__(by)
        self.by = by


def step_timeouts(ctx: Context) -> dict[str, float]:
    s = ctx.settings
    return {
        StepName.INSTALL: s.install_timeout,
        StepName.INSTALL_SCRIPTS: s.install_timeout,
        StepName.TYPECHECK: s.typecheck_timeout,
        StepName.SERVE: s.serve_timeout,
    }


@dataclass
class BuildRun:
    """One run of a build: its containers and images so far (to clean up on failure), and the
    follower that judges its steps."""

    ctx: Context
    recorder: BuildRecorder
    build_id: str
    website_id: str
    answers: Callable[[], bool] = lambda: False
    """Whether the dev server answers (set once there is one)."""
    port: int | None = None
    container_id: str | None = None
    owned: list[str] = field(default_factory=list)
    """Every container this run created (the build container, cache fillers, the check)."""
    images: list[str] = field(default_factory=list)
    """Short-lived images this run created (what the type check starts from)."""
    access: RegistryAccess = field(default_factory=RegistryAccess)
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        s = self.ctx.settings
        assert self.recorder.attempt is not None, "a build run is an attempt's"
        self.attempt = self.recorder.attempt
        self.port_owner = attempt_owner(self.build_id, self.attempt)
        """Who holds this run's port: this attempt (orchestrator.core.ports)."""
        self.workspace = s.workspaces_dir / self.build_id / str(self.attempt)
        """This attempt's folder for the upload's files: a stale attempt never writes its
        successor's."""
        steps = Steps(step_timeouts(self.ctx), time.monotonic(), s.build_timeout)
        self.follower = Follower(steps, s.memory_limit)
        self.disk = DiskQuota(s.disk_quota_mb << 20)
        self.runner = StepRunner(self.ctx.runtime, self.build_id)

    @property
    def steps(self) -> Steps:
        return self.follower.steps

    def spec(self, **overrides: object) -> ContainerSpec:
        """A container of this build's: its environment, registry access and CPU boost."""
        env_extra = overrides.pop("env_extra", None) or {}
        assert isinstance(env_extra, dict)
        base = ContainerSpec(
            self.build_id,
            self.website_id,
            None,
            # the image's home folder (and npm's cache in it) is the image user's; /tmp is everyone's
            {"HOME": "/tmp", "npm_config_cache": "/tmp/npm-cache", **self.env, **env_extra},
            self.access.extra_hosts,
            nano_cpus=self.ctx.settings.build_nano_cpus,
            user=defaults.build_user(self.port) if self.port is not None else defaults.CONTAINER_USER,
        )
        return replace(base, **overrides)  # type: ignore[arg-type]

    def create(self, spec: ContainerSpec, files: Path | Mapping[str, bytes]) -> str:
        """Create a container of this build's, with ``files`` (a folder, or name → bytes) in
        its work directory and the host's CA bundle where Node looks for it."""
        container_id = self.ctx.runtime.create_build_container(spec)
        self.owned.append(container_id)
        extra = {defaults.CONTAINER_CA_PATH: self.access.ca_bundle} if self.access.ca_bundle else {}
        with pack_for_container(files, extra, spec.user) as tar:
            self.ctx.runtime.copy_in(container_id, tar)
        return container_id

    def discard(self, container_id: str) -> None:
        self.ctx.runtime.remove(container_id)
        if container_id in self.owned:
            self.owned.remove(container_id)

    def run_step(self, step: str, container_id: str, command: str) -> None:
        """Run one step in the running build container and wait for its verdict."""
        self.recorder.start_step(step)
        self.steps.start(step, time.monotonic())
        self.runner.exec(step, container_id, command)
        self.follow(lambda: step in self.steps.passed)
        self.check_disk()  # what it wrote at the last moment counts as its own
        self.recorder.end_step(Outcome.OK, step)

    def run_alone(self, step: str, container_id: str) -> None:
        """Start a container whose own process is ``step`` and wait for its verdict."""
        self.recorder.start_step(step)
        self.steps.start(step, time.monotonic())
        self.check_cancelled()
        self.ctx.runtime.start(container_id)
        self.runner.container(step, container_id)
        self.follow(lambda: step in self.steps.passed)
        self.check_disk()

    def follow(self, done: Callable[[], bool]) -> None:
        """Carry out the follower's decisions until ``done()``; raises BuildFailed (or an
        infrastructure fault) on its verdict."""
        while not done():
            event = self.runner.next(timeout=0.25)
            if isinstance(event, Fault):
                raise event.error
            for decision in self.follower.feed(event, time.monotonic()):
                if isinstance(decision, Log):
                    self.recorder.log(decision.text)
                elif isinstance(decision, Passed) and decision.step == StepName.TYPECHECK:
                    self.recorder.end_step(Outcome.OK, StepName.TYPECHECK)
                elif isinstance(decision, Probe):
                    self.follower.answered(self.answers())
                elif isinstance(decision, Verdict):
                    raise failed(decision)
            self.check_cancelled()
            if self.disk.due(time.monotonic()):
                self.check_disk()

    def containers(self) -> list[str]:
        """Every container this run made, the build container included, once each."""
        extra = [self.container_id] if self.container_id and self.container_id not in self.owned else []
        return [*self.owned, *extra]

    def check_disk(self) -> None:
        """Measure what this run's containers wrote; past the quota the build fails (its
        containers are then removed, so nothing of it is kept or committed)."""
        if self.disk.limit <= 0:
            return
        used = [u for c in self.containers() if (u := self.ctx.runtime.disk_used(c)) is not None]
        why = self.disk.observe(used, time.monotonic())
        if why is not None:
            step = self.recorder.current_step or StepName.INSTALL
            raise BuildFailed(step, f"{label(step)} failed: {why}; nothing it wrote was kept")

    def check_cancelled(self) -> None:
        """Raise Cancelled if someone asked. With Redis away, nobody could have: the build goes
        on, and sees the request once Redis is back."""
        try:
            by = self.ctx.stores.signals.cancel_requested(self.build_id)
        except RedisError:
            return
        if by is not None:
            raise Cancelled(by)

    def remove_workspace(self) -> None:
        shutil.rmtree(self.workspace, ignore_errors=True)
        with contextlib.suppress(OSError):  # left to gc when another attempt's folder is there
            self.workspace.parent.rmdir()

    def clean_up(self) -> None:
        """Remove what this attempt made: its files, containers and images; free its port."""
        self.remove_workspace()
        for container in self.containers():
            try:
                self.ctx.runtime.remove(container)
            except OrchestratorError as exc:
                self.recorder.log(f"Could not remove container {container[:12]}: {exc}")
        for image in self.images:
            with contextlib.suppress(OrchestratorError):
                self.ctx.runtime.remove_image(image)
        if self.port is not None:
            try:
                self.ctx.port_pool().release(self.port, self.port_owner)
            except RedisError as exc:  # gc frees a port whose attempt is over
                self.recorder.log(f"Could not free port {self.port} yet (Redis: {exc}); gc will")


def remove_containers_of(ctx: Context, build_id: str, host_id: str | None = None) -> int:
    """Remove every container labelled with the build (whichever attempt made it) on its host
    (None: this one); how many."""
    runtime = ctx.runtime_for(host_id)
    found = runtime.containers_of(build_id)
    for container_id in found:
        runtime.remove(container_id)
    return len(found)


def failed(verdict: Verdict) -> Exception:
    if verdict.infrastructure:
        if verdict.step == StepName.INSTALL:
            return RegistryUnreachable(verdict.message)
        return RuntimeUnavailable(verdict.message)
    return BuildFailed(verdict.step, verdict.message)
