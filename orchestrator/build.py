"""The build job that RQ runs: one container per build, from upload to a live preview.

``run_build(build_id)`` is the RQ job function. It unpacks the upload into the build's
workspace and then, in order:

- reuses the outcome of an identical recent build when there is one (orchestrator.reuse);
- decides the commands (orchestrator.plan);
- takes node_modules from the dependency cache, filling it first on a miss (orchestrator.cache);
- starts the build container from that cache image with every idle core, follows its output
  (step markers and log lines) into the job record, and once the dev server answers and the
  type check passed, drops the container to the preview's CPU share.

The preview container keeps running after the job ends.
"""

from __future__ import annotations

import contextlib
import queue
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from redis.exceptions import RedisError

from orchestrator import defaults
from orchestrator.admission import Admission
from orchestrator.cache import DependencyCache
from orchestrator.config import Settings, get_settings
from orchestrator.db import get_engine, session_scope
from orchestrator.deps import LOCKFILES, InstallPlan, cache_key, install_manifest
from orchestrator.exceptions import BuildFailed, OrchestratorError, RegistryUnreachable, RuntimeUnavailable
from orchestrator.jobs import build_score
from orchestrator.markers import parse_marker
from orchestrator.models import BuildJob
from orchestrator.network import RegistryAccess, registry_access
from orchestrator.plan import STEP_BY_NAME, TypeCheck, make_plan
from orchestrator.ports import port_pool
from orchestrator.previews import mark_live, move_activity, retire_replaced
from orchestrator.recorder import BuildRecorder
from orchestrator.redis_conn import get_redis
from orchestrator.reuse import find_identical, hand_over
from orchestrator.runtime import KIND_FILLER, ContainerSpec, ContainerState, Runtime
from orchestrator.states import TERMINAL, Status
from orchestrator.uploads import Limits, extract_upload
from orchestrator.workspace import pack_for_container

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_EOF = object()


def step_timeout(settings: Settings, step: str) -> int:
    return {
        "install": settings.install_timeout,
        "lifecycle": settings.install_timeout,
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
    record: BuildJob
    port: int | None = None
    container_id: str | None = None
    filler_id: str | None = None

    @property
    def build_id(self) -> str:
        return self.record.id

    @property
    def website_id(self) -> str:
        return self.record.website_id

    def run(self) -> str:
        s = self.settings
        self.recorder.start_step("extract")
        workspace = s.workspaces_dir / self.build_id
        limits = Limits(s.max_upload_bytes, s.max_unpacked_bytes, s.max_files)
        extracted = extract_upload(s.uploads_dir / f"{self.build_id}.zip", workspace, limits)
        self.recorder.log(f"Extracted {len(extracted.files)} files")
        self.recorder.update(files_hash=extracted.files_hash)
        self.runtime.check()
        self.check_cancelled()

        previous = None if self.record.rebuild else find_identical(self.record, extracted.files_hash, s)
        if previous is not None and previous.status == Status.FAILED:
            raise ReusedFailure(previous)
        if (
            previous is not None
            and previous.status == Status.RUNNING
            and previous.website_id == self.website_id
        ):
            url = self.adopt(previous)
            if url is not None:
                return url

        self.port = port_pool(s).allocate(self.build_id)
        lockfile = next((f for f in LOCKFILES if f in extracted.files), None)
        lockfile_text = (workspace / lockfile).read_text(errors="replace") if lockfile else None
        plan = make_plan(extracted.files, extracted.package, self.port, lockfile_text)
        typecheck = plan.typecheck
        if previous is not None and typecheck.command:
            typecheck = TypeCheck(
                None, f"type check skipped: build {previous.id} type checked these very files"
            )
            self.recorder.update(reused_from=previous.id)
        elif typecheck.command:
            self.recorder.log(f"Type check: {typecheck.reason}")
        access = registry_access(s)
        for note in access.notes:
            self.recorder.log(f"Registry: {note}")

        image = None
        if plan.install is not None:
            self.recorder.log(f"Dependencies: {plan.install.manager} ({plan.install.command})")
            if plan.install.cacheable:
                assert extracted.package is not None
                image = self.prepare_dependencies(plan.install, extracted.package, workspace, access)
            else:
                self.recorder.log(f"Dependency cache not used: {plan.install.why_not_cached}")
        env = {**plan.container_env(installed=image is not None, typecheck=typecheck), **access.env}
        env["PORT"] = str(self.port)
        if s.public_host not in ("localhost", "127.0.0.1"):
            env["__VITE_ADDITIONAL_SERVER_ALLOWED_HOSTS"] = s.public_host
        self.container_id = self.runtime.create_build_container(
            ContainerSpec(
                self.build_id,
                self.website_id,
                self.port,
                env,
                access.extra_hosts,
                image=image,
                nano_cpus=s.build_nano_cpus,
            )
        )
        self.recorder.update(allocated_port=self.port, container_id=self.container_id)
        with pack_for_container(workspace, self.ca_file(access)) as tar:
            self.runtime.copy_in(self.container_id, tar)
        shutil.rmtree(workspace, ignore_errors=True)  # the container has the files; the upload stays
        self.check_cancelled()
        self.runtime.start(self.container_id)
        self.recorder.log(
            f"Container {self.container_id[:12]} started (memory {s.memory_limit}, "
            f"{s.build_nano_cpus / 1e9:g} CPU while building, {s.nano_cpus / 1e9:g} once live)"
        )
        if plan.install is None:
            self.recorder.skip_step("install", "No package.json: nothing to install")
        self.follow(self.container_id, typecheck=typecheck.command is not None)
        self.runtime.set_cpus(self.container_id, s.nano_cpus)
        url = s.preview_url(self.port)
        self.recorder.log(f"Preview live at {url}")
        self.recorder.running(url)
        self.after_live()
        return url

    @staticmethod
    def ca_file(access: RegistryAccess) -> dict[str, bytes]:
        return {defaults.CONTAINER_CA_PATH: access.ca_bundle} if access.ca_bundle else {}

    def prepare_dependencies(
        self, install: InstallPlan, package: dict, workspace: Path, access: RegistryAccess
    ) -> str:
        """The image to start the build container from: this project's node_modules from the
        cache, filled first on a miss (by a container that sees only the install's files)."""
        s = self.settings
        cache = DependencyCache(s, self.runtime, get_redis())
        manifest = install_manifest(package)
        inputs = {name: (workspace / name).read_bytes() for name in install.inputs}
        base = self.runtime.image(s.node_image)
        key = cache_key(
            manifest, inputs, image_id=base["Id"] if base else s.node_image, registry=s.npm_registry
        )
        self.recorder.update(deps_key=key)
        found = cache.lookup(key)
        if found is not None:
            self.recorder.skip_step(
                "install",
                f"Dependencies from the cache (key {key[:12]}): nothing to install",
                status="cached",
            )
            return found
        self.recorder.start_step("install")
        self.recorder.log(f"Dependency cache: miss (key {key[:12]})")
        self.recorder.flush()
        with cache.filling(key, timeout=s.install_timeout):
            found = cache.lookup(key)  # filled meanwhile by a build with the same dependencies
            if found is None:
                return self.fill(cache, key, install, manifest, inputs, access)
        self.recorder.log(f"Dependencies from the cache (key {key[:12]}), filled meanwhile by another build")
        self.recorder.end_step("cached", "install")
        return found

    def fill(
        self,
        cache: DependencyCache,
        key: str,
        install: InstallPlan,
        manifest: bytes,
        inputs: dict[str, bytes],
        access: RegistryAccess,
    ) -> str:
        s = self.settings
        env = {**install.env, **access.env, "ORCH_INSTALL": install.command, "ORCH_ONLY_INSTALL": "1"}
        self.filler_id = self.runtime.create_build_container(
            ContainerSpec(
                self.build_id,
                self.website_id,
                None,
                env,
                access.extra_hosts,
                nano_cpus=s.build_nano_cpus,
                kind=KIND_FILLER,
            )
        )
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "package.json").write_bytes(manifest)
            for name, data in inputs.items():
                (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
                (Path(tmp) / name).write_bytes(data)
            with pack_for_container(Path(tmp), self.ca_file(access)) as tar:
                self.runtime.copy_in(self.filler_id, tar)
        self.check_cancelled()
        self.runtime.start(self.filler_id)
        self.follow(self.filler_id, until_exit=True)
        image = cache.save(self.filler_id, key, self.build_id)
        self.runtime.remove(self.filler_id)
        self.filler_id = None
        self.recorder.log(f"Dependency cache: saved (key {key[:12]}) for the next builds")
        return image

    def adopt(self, previous: BuildJob) -> str | None:
        """Take over the live preview of the website's identical previous build; None when it
        is not live any more (then this build builds)."""
        assert previous.container_id and previous.allocated_port and previous.preview_url
        state = self.runtime.state(previous.container_id)
        if state is None or not state.running:
            return None
        pool = port_pool(self.settings)
        if not pool.store.transfer(previous.allocated_port, previous.id, self.build_id):
            return None
        if not hand_over(previous, self.build_id):
            pool.store.transfer(previous.allocated_port, self.build_id, previous.id)
            return None
        self.port, self.container_id = previous.allocated_port, previous.container_id
        move_activity(previous.id, self.build_id)
        reason = f"identical files to build {previous.id}, whose preview is live: reused, not rebuilt"
        for step in ("install", "typecheck", "serve"):
            self.recorder.skip_step(step, "", status="reused")
        self.recorder.log(f"Reused: {reason}")
        self.recorder.log(f"Preview live at {previous.preview_url}")
        self.recorder.running(previous.preview_url)
        return previous.preview_url

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

    def follow(self, container_id: str, *, typecheck: bool = False, until_exit: bool = False) -> None:
        """Read a container's output into the record. A build container: until the dev server
        answers and the type check (run beside it) passed. A cache filler (``until_exit``):
        until it exits 0. Raises BuildFailed when a step fails or runs out of time."""
        events: queue.Queue[object] = queue.Queue()

        def pump() -> None:
            for line in self.runtime.log_lines(container_id):
                events.put(line)
            events.put(_EOF)

        threading.Thread(target=pump, name=f"logs-{self.build_id[:8]}", daemon=True).start()
        deadlines: dict[str, float] = {}
        step, failed, checked, serving = "extract", None, not typecheck, False
        probe_at, started = 0.0, time.monotonic()
        while True:
            try:
                item = events.get(timeout=0.25)
            except queue.Empty:
                item = None
            if item is _EOF:
                state = self.runtime.wait(container_id, timeout=10)
                code = state.exit_code if state else None
                if until_exit and failed is None and code == 0:
                    self.recorder.end_step("ok")
                    return
                if failed is not None:
                    step, code = failed[0], failed[1] if failed[1] is not None else code
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
                    self.recorder.start_step(step, alongside=step == "serve" and not checked)
                    deadlines[step] = time.monotonic() + step_timeout(self.settings, step)
                    serving = serving or step == "serve"
                elif marker.event == "ok":
                    self.recorder.end_step("ok", marker.step)
                    deadlines.pop(marker.step, None)
                    checked = checked or marker.step == "typecheck"
                elif marker.event == "skipped":
                    self.recorder.skip_step(marker.step, marker.detail)
                    checked = checked or marker.step == "typecheck"
                elif marker.event == "failed" and failed is None:
                    failed = (marker.step, int(marker.detail) if marker.detail.isdigit() else None)
            self.check_cancelled()
            if serving and checked and failed is None and time.monotonic() >= probe_at:
                probe_at = time.monotonic() + 0.2
                if self.answers():
                    return
            now = time.monotonic()
            for name, deadline in deadlines.items():
                if now > deadline:
                    label = STEP_BY_NAME[name].label.lower()
                    raise BuildFailed(
                        name, f"timed out while {label} after {step_timeout(self.settings, name)} s"
                    )
            if not deadlines and now - started > 60 and not serving:
                raise BuildFailed(step, "the build container started no step within 60 s")

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
        for container in (self.filler_id, self.container_id):
            if container:
                try:
                    self.runtime.remove(container)
                except OrchestratorError as exc:
                    self.recorder.log(f"Could not remove container {container[:12]}: {exc}")
        if self.port is not None:
            port_pool(self.settings).release(self.port, self.build_id)


class ReusedFailure(Exception):
    """An upload identical to a recent build that failed: that failure is the answer."""

    def __init__(self, previous: BuildJob) -> None:
        super().__init__(previous.error or "failed")
        self.previous = previous


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
    build = Build(settings, Runtime(settings), recorder, record)
    slot_held = True
    try:
        with Heartbeat(build_id):
            return build.run()
    except Cancelled as exc:
        build.clean_up()
        recorder.cancelled(exc.by)
    except ReusedFailure as exc:
        build.clean_up()
        previous = exc.previous
        recorder.update(reused_from=previous.id)
        recorder.log(
            f"Identical files to build {previous.id}, which failed: its failure is reported again "
            "without rebuilding. Fix the files, or ask for a rebuild to try them again."
        )
        recorder.fail(previous.error_step, f"{previous.error} (from build {previous.id}, identical files)")
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
