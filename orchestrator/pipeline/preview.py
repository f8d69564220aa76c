"""A build's preview from the outside: asking the dev server whether it answers, warming it up,
taking over an identical live preview, and what follows going live."""

from __future__ import annotations

import functools
import time

import httpx
from redis.exceptions import RedisError

from orchestrator.config import Settings
from orchestrator.context import Context
from orchestrator.core.exceptions import OrchestratorError
from orchestrator.core.ports import attempt_owner
from orchestrator.core.status import Outcome, Status, StepName
from orchestrator.core.warmup import warm_up
from orchestrator.pipeline.containers import BuildRun
from orchestrator.pipeline.reuse import hand_over
from orchestrator.pipeline.step_runner import SERVE_WRAPPER
from orchestrator.state.models import BuildJob
from orchestrator.state.previews import mark_live, retire_replaced

WARM_UP_SECONDS = 15.0
"""At most this long is spent warming a new preview up (orchestrator.core.warmup)."""

STATE_EVERY = 0.25
"""While a revived preview does not answer yet, its container's state is read this often."""


@functools.cache
def _probe() -> httpx.Client:
    """One client for every GET from a preview in this process, made on first use: a new one
    (httpx.get) costs about 25 ms of TLS set-up each time, longer than a poll's pause. No
    connection is kept (a preview may go to sleep), and no proxy of the environment applies to
    our own loopback."""
    return httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), trust_env=False)


def request(
    settings: Settings, port: int, path: str, timeout: float = 2.0, reach: tuple[str, str] | None = None
) -> httpx.Response | None:
    """GET ``path`` from the preview on ``port`` as a browser would (its Host header); None when
    nothing answers. ``reach``: another host's (address, host name) (Context.reach)."""
    address, host = reach or (settings.preview_address, settings.public_host)
    try:
        headers = {"Host": f"{host}:{port}"}
        return _probe().get(f"http://{address}:{port}{path}", timeout=timeout, headers=headers)
    except httpx.HTTPError:
        return None


class PreviewProbe:
    """GETs from the preview as a browser would (its Host header)."""

    def __init__(self, run: BuildRun) -> None:
        self.run = run
        self.first_page = ""
        """The preview's page as it first answered (what the warm-up reads)."""

    def request(self, path: str, timeout: float = 2.0) -> httpx.Response | None:
        assert self.run.port is not None
        return request(self.run.ctx.settings, self.run.port, path, timeout)

    def answers(self) -> bool:
        response = self.request("/")
        if response is None or response.status_code >= 500:
            return False
        self.first_page = response.text
        return True

    def warm_up(self) -> None:
        """Have Vite transform the entry module and pre-bundle its dependencies while the build's
        cores are still there: a visitor's first load is then quick."""
        started = time.monotonic()

        def get(path: str) -> str | None:
            response = self.request(path, timeout=WARM_UP_SECONDS)
            return response.text if response is not None and response.status_code < 400 else None

        paths = warm_up(get, self.first_page, WARM_UP_SECONDS)
        if paths:
            self.run.recorder.log(
                f"Warmed up {len(paths)} modules ({paths[0]} and what it imports) in "
                f"{time.monotonic() - started:.1f} s, before the CPU drops to the preview's share"
            )
        self.run.recorder.flush()


def adopt(run: BuildRun, previous: BuildJob) -> str | None:
    """Take over the live preview of the website's identical previous build; None when it is
    not live any more (then this build builds)."""
    ctx = run.ctx
    assert previous.container_id and previous.allocated_port and previous.preview_url
    if previous.status != Status.RUNNING or not ctx.is_here(previous.host_id):
        return None  # (a preview on another host stays there: this build builds here)
    state = ctx.runtime.state(previous.container_id)
    if state is None or not state.running:
        return None
    ports, previous_owner = ctx.stores.ports, attempt_owner(previous.id, previous.attempts)
    if not ports.transfer(previous.allocated_port, previous_owner, run.port_owner):
        return None
    if not hand_over(ctx, previous, run.build_id, run.attempt):
        ports.transfer(previous.allocated_port, run.port_owner, previous_owner)
        return None
    run.port, run.container_id = previous.allocated_port, previous.container_id
    ctx.stores.activity.move(previous.id, run.build_id)
    reason = f"identical files to build {previous.id}, whose preview is live: reused, not rebuilt"
    for step in (StepName.INSTALL, StepName.TYPECHECK, StepName.SERVE):
        run.recorder.skip_step(step, "", status=Outcome.REUSED)
    run.recorder.log(f"Reused: {reason}")
    run.recorder.log(f"Preview live at {previous.preview_url}")
    run.recorder.running(previous.preview_url)
    return previous.preview_url


def after_live(run: BuildRun) -> None:
    """Start watching the new preview's traffic, and stop the website's previous preview. The
    build is live whatever happens here: a failure is logged, and gc catches up."""
    assert run.container_id
    try:
        mark_live(run.ctx, run.build_id, run.container_id, run.port)
        for old in retire_replaced(run.ctx, run.website_id):
            run.recorder.log(f"Stopped the preview of build {old}, which this one replaces")
    except (OrchestratorError, RedisError) as exc:
        run.recorder.log(f"After going live: {exc} (gc will finish the switch)")
    run.recorder.flush()


def revive(
    ctx: Context, build: BuildJob, serve: str, wait: float = 60.0, poll: float = 0.5, settle: bool = True
) -> str | None:
    """Start a live preview again whose container stopped under it (a host reboot, its server
    crashing): the container, then its development server (``serve``, the command its label
    kept). None once the preview answers again; else why it did not."""
    container, port = build.container_id, build.allocated_port
    if container is None or port is None:
        return "the build has no container or port on record"
    try:
        runtime, reach = ctx.runtime_for(build.host_id), ctx.reach(build.host_id)
    except OrchestratorError as exc:
        return str(exc)
    try:
        runtime.start(container)
        runtime.exec_start(container, [SERVE_WRAPPER, "sh", "-c", f"exec {serve}"], detach=True)
    except OrchestratorError as exc:
        return str(exc)
    deadline = time.monotonic() + wait
    look = time.monotonic() + STATE_EVERY
    while time.monotonic() < deadline:
        response = request(ctx.settings, port, "/", timeout=max(poll, 1.0), reach=reach)
        if response is not None and response.status_code < 500:
            # a start is activity: not reaped as idle at once
            mark_live(ctx, build.id, container, port, settle, build.host_id)
            return None
        if time.monotonic() >= look:  # not at every poll: a look at Docker costs more than one
            look = time.monotonic() + STATE_EVERY
            state = runtime.state(container)
            if state is None or not state.running:
                return f"its server exited again (exit code {state.exit_code if state else 'unknown'})"
        time.sleep(poll)
    return f"its server did not answer within {wait:.0f} s"
