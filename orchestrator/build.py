"""The build job that RQ runs: one container per build, from upload to a live preview.

``run_build(build_id)`` is the RQ job function. It unpacks the upload into the build's
workspace, decides the commands (orchestrator.plan), starts the container, follows its
output (step markers and log lines) into the job record, and returns once the dev server
answers on its published port. The preview container keeps running after the job ends.
"""

from __future__ import annotations

import contextlib
import queue
import re
import shutil
import threading
import time
from dataclasses import dataclass

import httpx
from redis.exceptions import RedisError

from orchestrator import defaults
from orchestrator.admission import Admission
from orchestrator.config import Settings, get_settings
from orchestrator.db import get_engine, session_scope
from orchestrator.exceptions import BuildFailed, OrchestratorError, RegistryUnreachable, RuntimeUnavailable
from orchestrator.jobs import build_score
from orchestrator.markers import parse_marker
from orchestrator.models import BuildJob
from orchestrator.network import registry_access
from orchestrator.plan import STEP_BY_NAME, make_plan
from orchestrator.ports import port_pool
from orchestrator.previews import mark_live, retire_replaced
from orchestrator.recorder import BuildRecorder
from orchestrator.redis_conn import get_redis
from orchestrator.runtime import ContainerSpec, ContainerState, Runtime
from orchestrator.states import TERMINAL
from orchestrator.uploads import Limits, extract_upload
from orchestrator.workspace import pack_for_container

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_EOF = object()


def step_timeout(settings: Settings, step: str) -> int:
    return {
        "install": settings.install_timeout,
        "typecheck": settings.typecheck_timeout,
        "serve": settings.serve_timeout,
    }.get(step, 60)


_BOILERPLATE = re.compile(
    r"^npm error (code \S+|\d+|a complete log.*|this is probably.*|\d+ note that you can also.*)?\s*$",
    re.IGNORECASE,
)


def failure_cause(lines: list[str]) -> str:
    """The line of a step's output that best says what went wrong: the first error line that
    is not boilerplate (tsc's first diagnostic, npm's first real complaint), else the last line."""
    text = [_ANSI.sub("", line).strip() for line in lines]
    text = [line for line in text if line and not line.startswith("::orchestrator::")]
    for line in text:
        if re.search(r"\berror\b", line, re.IGNORECASE) and not _BOILERPLATE.match(line):
            return line
    return text[-1] if text else "no output"


_NETWORK_FAULT = re.compile(
    r"\b(ETIMEDOUT|EAI_AGAIN|ECONNRESET|ECONNREFUSED|ENETUNREACH|EHOSTUNREACH|ENOTFOUND)\b"
    r"|network timeout|socket hang up",
)


def is_network_fault(lines: list[str]) -> bool:
    """True when a failed install says the registry could not be reached."""
    return any(_NETWORK_FAULT.search(line) for line in lines)


def failure_message(
    step: str,
    exit_code: int | None,
    lines: list[str],
    state: ContainerState | None,
    memory_limit: str = defaults.MEMORY_LIMIT,
) -> str:
    """What a user reads when a step ends with a non-zero exit code."""
    label = _label(step)
    if state is not None and state.oom_killed:
        return f"{label} failed: ran out of memory ({_memory_text(memory_limit)} limit)"
    if exit_code == 137:
        return f"{label} failed: the process was killed (exit code 137), most likely out of memory"
    if step == "serve":
        return (
            f"{label} failed: the server exited before it answered "
            f"(exit code {exit_code}): {failure_cause(lines)}"
        )
    return f"{label} failed (exit code {exit_code}): {failure_cause(lines)}"


@dataclass
class Build:
    """One run of the build job: what it holds so far, to clean up on failure."""

    settings: Settings
    runtime: Runtime
    recorder: BuildRecorder
    build_id: str
    website_id: str
    port: int | None = None
    container_id: str | None = None

    def run(self) -> str:
        s = self.settings
        self.recorder.start_step("extract")
        workspace = s.workspaces_dir / self.build_id
        limits = Limits(s.max_upload_bytes, s.max_unpacked_bytes, s.max_files)
        extracted = extract_upload(s.uploads_dir / f"{self.build_id}.zip", workspace, limits)
        self.recorder.log(f"Extracted {len(extracted.files)} files")
        self.runtime.check()
        self.check_cancelled()
        self.port = port_pool(s).allocate(self.build_id)
        plan = make_plan(extracted.files, extracted.package, self.port)
        if plan.install:
            self.recorder.log(f"Dependencies: {plan.install}")
        if plan.typecheck.command:
            self.recorder.log(f"Type check: {plan.typecheck.reason}")
        access = registry_access(s)
        for note in access.notes:
            self.recorder.log(f"Registry: {note}")
        env = {**plan.container_env(), **access.env, "PORT": str(self.port)}
        if s.public_host not in ("localhost", "127.0.0.1"):
            env["__VITE_ADDITIONAL_SERVER_ALLOWED_HOSTS"] = s.public_host
        self.container_id = self.runtime.create_build_container(
            ContainerSpec(self.build_id, self.website_id, self.port, env, access.extra_hosts)
        )
        self.recorder.update(
            files_hash=extracted.files_hash, allocated_port=self.port, container_id=self.container_id
        )
        extra = {defaults.CONTAINER_CA_PATH: access.ca_bundle} if access.ca_bundle else {}
        with pack_for_container(workspace, extra) as tar:
            self.runtime.copy_in(self.container_id, tar)
        shutil.rmtree(workspace, ignore_errors=True)  # the container has the files; the upload stays
        self.check_cancelled()
        self.runtime.start(self.container_id)
        self.recorder.log(
            f"Container {self.container_id[:12]} started (memory {s.memory_limit}, {s.nano_cpus / 1e9:g} CPU)"
        )
        if plan.install is None:
            self.recorder.skip_step("install", "No package.json: nothing to install")
        self.follow()
        url = s.preview_url(self.port)
        self.recorder.log(f"Preview live at {url}")
        self.recorder.running(url)
        self.after_live()
        return url

    def after_live(self) -> None:
        """Start watching the new preview's traffic, and stop the website's previous preview.
        The build is live whatever happens here: a failure is logged, and gc catches up."""
        assert self.container_id
        try:
            mark_live(self.runtime, self.build_id, self.container_id)
            for old in retire_replaced(self.settings, self.runtime, self.website_id):
                self.recorder.log(f"Stopped the preview of build {old}, which this one replaces")
        except (OrchestratorError, RedisError) as exc:
            self.recorder.log(f"After going live: {exc} (gc will finish the switch)")
        self.recorder.flush()

    def follow(self) -> None:
        """Read the container's output until the dev server answers, or a step fails."""
        assert self.container_id and self.port
        events: queue.Queue[object] = queue.Queue()

        def pump() -> None:
            for line in self.runtime.log_lines(self.container_id):  # type: ignore[arg-type]
                events.put(line)
            events.put(_EOF)

        threading.Thread(target=pump, name=f"logs-{self.build_id[:8]}", daemon=True).start()
        step, deadline, failed_code = "extract", time.monotonic() + 60.0, None
        probe_at = 0.0
        while True:
            try:
                item = events.get(timeout=0.25)
            except queue.Empty:
                item = None
            if item is _EOF:
                state = self.runtime.wait(self.container_id, timeout=10)
                code = failed_code if failed_code is not None else (state.exit_code if state else None)
                if step == "install" and is_network_fault(self.recorder.step_lines):
                    cause = failure_cause(self.recorder.step_lines)
                    raise RegistryUnreachable(f"the package registry could not be reached: {cause}")
                raise BuildFailed(
                    step,
                    failure_message(step, code, self.recorder.step_lines, state, self.settings.memory_limit),
                )
            if isinstance(item, str):
                marker = parse_marker(item)
                if marker is None:
                    self.recorder.log(item)
                elif marker.step in STEP_BY_NAME and marker.event == "start":
                    step = marker.step
                    self.recorder.start_step(step)
                    deadline = time.monotonic() + step_timeout(self.settings, step)
                elif marker.event == "skipped":
                    self.recorder.skip_step(marker.step, marker.detail)
                elif marker.event == "failed":
                    failed_code = int(marker.detail) if marker.detail.isdigit() else None
            self.check_cancelled()
            if step == "serve" and time.monotonic() >= probe_at:
                probe_at = time.monotonic() + 0.5
                if self.answers():
                    return
            if time.monotonic() > deadline:
                label = STEP_BY_NAME[step].label.lower()
                raise BuildFailed(
                    step, f"timed out while {label} after {step_timeout(self.settings, step)} s"
                )

    def check_cancelled(self) -> None:
        by = get_redis().get(defaults.CANCEL_KEY + self.build_id)
        if by is not None:
            raise Cancelled(by.decode() if isinstance(by, bytes) else str(by))

    def answers(self) -> bool:
        host = "127.0.0.1" if self.settings.preview_bind in ("0.0.0.0", "") else self.settings.preview_bind
        try:
            response = httpx.get(
                f"http://{host}:{self.port}/",
                timeout=2.0,
                headers={"Host": f"{self.settings.public_host}:{self.port}"},
            )
        except httpx.HTTPError:
            return False
        return response.status_code < 500

    def clean_up(self) -> None:
        shutil.rmtree(self.settings.workspaces_dir / self.build_id, ignore_errors=True)
        if self.container_id:
            try:
                self.runtime.remove(self.container_id)
            except OrchestratorError as exc:
                self.recorder.log(f"Could not remove container {self.container_id[:12]}: {exc}")
        if self.port is not None:
            port_pool(self.settings).release(self.port, self.build_id)


class Cancelled(Exception):
    """Raised inside a build when someone asked to cancel it."""

    def __init__(self, by: str) -> None:
        super().__init__(by)
        self.by = by


class Heartbeat:
    """Tells the dispatchers this build's worker is alive, every HEARTBEAT_SECONDS."""

    def __init__(self, build_id: str) -> None:
        self.key = defaults.HEARTBEAT_KEY + build_id
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"heartbeat-{build_id[:8]}", daemon=True)

    def _beat(self) -> None:
        while not self.stopped.is_set():
            with contextlib.suppress(RedisError):  # a missed beat: recovery tolerates a few
                get_redis().set(self.key, "1", ex=defaults.HEARTBEAT_TTL)
            self.stopped.wait(defaults.HEARTBEAT_SECONDS)

    def __enter__(self) -> Heartbeat:
        get_redis().set(self.key, "1", ex=defaults.HEARTBEAT_TTL)
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        get_redis().delete(self.key)


def run_build(build_id: str) -> str | None:
    """RQ job: build one website and leave its preview running. Returns the preview URL."""
    get_engine().dispose(close=False)  # forked from the worker: never share its connections
    settings = get_settings()
    gate = Admission(get_redis())
    recorder = BuildRecorder(build_id, settings.log_lines_kept)
    record = recorder.begin()
    if record is None:  # cancelled while it waited, or already taken by another worker
        with session_scope() as session:
            current = session.get(BuildJob, build_id)
            if current is not None and current.status in TERMINAL:
                gate.release(build_id)
        return None
    build = Build(settings, Runtime(settings), recorder, build_id, record.website_id)
    slot_held = True
    try:
        with Heartbeat(build_id):
            return build.run()
    except Cancelled as exc:
        build.clean_up()
        recorder.cancelled(exc.by)
    except BuildFailed as exc:
        build.clean_up()
        recorder.fail(exc.step, str(exc))
    except (RuntimeUnavailable, RegistryUnreachable) as exc:
        build.clean_up()
        if record.attempts < settings.max_attempts:
            delay = 2**record.attempts
            recorder.requeued(
                f"{_label(recorder.current_step)}: {exc}. Retrying in {delay} s "
                f"(attempt {record.attempts + 1} of {settings.max_attempts})"
            )
            gate.release(build_id)
            slot_held = False
            time.sleep(delay)  # back off before the build is admitted again
            gate.add(build_id, record.owner_id, build_score(record))
        else:
            recorder.fail(
                recorder.current_step,
                f"{_label(recorder.current_step)}: {exc} (gave up after {record.attempts} attempts)",
            )
    except OrchestratorError as exc:
        build.clean_up()
        recorder.fail(recorder.current_step, f"{_label(recorder.current_step)}: {exc}")
    except Exception as exc:
        build.clean_up()
        recorder.fail(recorder.current_step, f"{_label(recorder.current_step)}: internal error: {exc!r}")
        raise
    finally:
        if slot_held:
            gate.release(build_id)
        get_redis().delete(defaults.CANCEL_KEY + build_id)
    return None


def _memory_text(limit: str) -> str:
    """'512m' → '512 MB', as Docker's limit reads to a person."""
    found = re.fullmatch(r"(\d+)\s*([kmg]?)b?", limit.strip().lower())
    return f"{found[1]} {found[2].upper()}B" if found else limit


def _label(step: str | None) -> str:
    return STEP_BY_NAME[step].label.lower() if step in STEP_BY_NAME else "build"
