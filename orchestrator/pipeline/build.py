"""The build job that RQ runs: one container per build, from upload to a live preview.

``run_build(build_id)`` is the RQ job function. It unpacks the upload into the build's
workspace and then, in order:

- reuses the outcome of an identical recent build when there is one (orchestrator.pipeline.reuse);
- decides the commands (orchestrator.core.plan);
- takes node_modules from the dependency cache, filling it first on a miss (orchestrator.pipeline.fill);
- creates the build container from that cache image, with every idle core, and runs each step
  in it as a process of its own: the project's install scripts (``docker exec``), then the dev
  server (a detached exec) beside the type check (a container of its own, with its own memory
  limit, from the same files). Each verdict is the exit code Docker reports
  (orchestrator.core.steps); the output is only logged. Once the server answers and the type check
  passed, the container drops to the preview's CPU share.

The preview container keeps running after the job ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
from redis.exceptions import RedisError

from orchestrator.adapters.database import get_engine, session_scope
from orchestrator.adapters.network import RegistryAccess, registry_access
from orchestrator.adapters.redis_client import get_redis
from orchestrator.adapters.runtime import KIND_CHECK, ContainerSpec, Runtime
from orchestrator.adapters.uploads import Limits, extract_upload
from orchestrator.adapters.workspace import pack_for_container
from orchestrator.config import Settings, get_settings
from orchestrator.coordination.admission import Admission
from orchestrator.core import defaults
from orchestrator.core.exceptions import (
    BuildFailed,
    OrchestratorError,
    RegistryUnreachable,
    RuntimeUnavailable,
)
from orchestrator.core.failures import (
    build_timeout_message,
    failure_cause,
    failure_message,
    is_network_fault,
    label,
    timeout_message,
)
from orchestrator.core.installs import LOCKFILES, InstallPlan, cache_key, install_manifest
from orchestrator.core.plan import TypeCheck, make_plan
from orchestrator.core.ports import port_pool
from orchestrator.core.status import TERMINAL, Status
from orchestrator.core.steps import Exited, Failure, Line, Steps, Why
from orchestrator.core.warmup import warm_up
from orchestrator.pipeline.cache import DependencyCache
from orchestrator.pipeline.fill import FillContext, fill, step_image_labels, store_name
from orchestrator.pipeline.reuse import find_identical, hand_over
from orchestrator.pipeline.step_runner import Fault, StepRunner
from orchestrator.scheduling.queue import build_score
from orchestrator.state.models import BuildJob
from orchestrator.state.previews import mark_live, move_activity, retire_replaced
from orchestrator.state.recorder import BuildRecorder

WARM_UP_SECONDS = 15.0
"""At most this long is spent warming a new preview up (orchestrator.core.warmup)."""


def step_timeouts(settings: Settings) -> dict[str, float]:
    return {
        "install": settings.install_timeout,
        "lifecycle": settings.install_timeout,
        "typecheck": settings.typecheck_timeout,
        "serve": settings.serve_timeout,
    }


@dataclass
class Build:
    """One run of the build job: what it holds so far, to clean up on failure."""

    settings: Settings
    runtime: Runtime
    recorder: BuildRecorder
    record: BuildJob
    port: int | None = None
    container_id: str | None = None
    owned: list[str] = field(default_factory=list)
    """Every container this run created (the build container, cache fillers, the check)."""
    images: list[str] = field(default_factory=list)
    """Short-lived images this run created (what the type check starts from)."""
    access: RegistryAccess = field(default_factory=RegistryAccess)
    env: dict[str, str] = field(default_factory=dict)
    """The environment of this build's containers."""
    first_page: str = ""
    """The preview's page as it first answered (what the warm-up reads)."""

    def __post_init__(self) -> None:
        s = self.settings
        self.steps = Steps(step_timeouts(s), time.monotonic(), s.build_timeout)
        self.runner = StepRunner(self.runtime, self.build_id)
        self.lines: dict[str, deque[str]] = defaultdict(lambda: deque(maxlen=200))

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
        for note in extracted.notes:
            self.recorder.log(f"Upload: {note}")
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
        self.access = registry_access(s)
        for note in self.access.notes:
            self.recorder.log(f"Registry: {note}")
        self.env = {**(plan.install.env if plan.install else {}), **self.access.env}

        image = None
        if plan.install is not None:
            self.recorder.log(f"Dependencies: {plan.install.manager} ({plan.install.command})")
            if plan.install.cacheable:
                assert extracted.package is not None
                image = self.prepare_dependencies(plan.install, extracted.package, workspace)
            else:
                self.recorder.log(f"Dependency cache not used: {plan.install.why_not_cached}")
        env = {"PORT": str(self.port)}
        if s.public_host not in ("localhost", "127.0.0.1"):
            env["__VITE_ADDITIONAL_SERVER_ALLOWED_HOSTS"] = s.public_host
        self.container_id = self.create(self.spec(port=self.port, image=image, env_extra=env), workspace)
        self.recorder.update(allocated_port=self.port, container_id=self.container_id)
        self.check_cancelled()
        self.runtime.start(self.container_id)
        self.recorder.log(
            f"Container {self.container_id[:12]} started (memory {s.memory_limit}, "
            f"{s.build_nano_cpus / 1e9:g} CPU while building, {s.nano_cpus / 1e9:g} once live)"
        )
        if plan.install is None:
            self.recorder.skip_step("install", "No package.json: nothing to install")
        elif image is None:
            self.run_step("install", self.container_id, plan.install.command)
        elif plan.install.lifecycle:
            self.run_step("lifecycle", self.container_id, plan.install.lifecycle)
        if typecheck.command:
            # The build container's files as they are now: the upload on the cached image, unless
            # an install ran in it (an uncached one, or the project's install scripts).
            untouched = not (plan.install and plan.install.lifecycle)
            self.start_check(typecheck.command, (image, workspace) if image and untouched else None)
        else:
            self.recorder.skip_step("typecheck", typecheck.reason)
        self.recorder.start_step("serve", alongside=typecheck.command is not None)
        self.steps.start("serve", time.monotonic())
        self.runner.service("serve", self.container_id, plan.serve)
        shutil.rmtree(workspace, ignore_errors=True)  # the containers have the files; the upload stays
        self.follow(lambda: self.steps.answered)
        self.warm_up()  # while the type check goes on in its own container
        self.follow(lambda: self.steps.live)
        self.discard_check()
        self.runtime.set_cpus(self.container_id, s.nano_cpus)
        url = s.preview_url(self.port)
        self.recorder.log(f"Preview live at {url}")
        self.recorder.running(url)
        self.after_live()
        return url

    # -- containers and steps --------------------------------------------------------

    def spec(self, **overrides: object) -> ContainerSpec:
        """A container of this build's: its environment, registry access and CPU boost."""
        env_extra = overrides.pop("env_extra", None) or {}
        assert isinstance(env_extra, dict)
        base = ContainerSpec(
            self.build_id,
            self.website_id,
            None,
            {**self.env, **env_extra},
            self.access.extra_hosts,
            nano_cpus=self.settings.build_nano_cpus,
        )
        return replace(base, **overrides)  # type: ignore[arg-type]

    def create(self, spec: ContainerSpec, files: Path | Mapping[str, bytes]) -> str:
        """Create a container of this build's, with ``files`` (a folder, or name → bytes) in
        its work directory and the host's CA bundle where Node looks for it."""
        container_id = self.runtime.create_build_container(spec)
        self.owned.append(container_id)
        extra = {defaults.CONTAINER_CA_PATH: self.access.ca_bundle} if self.access.ca_bundle else {}
        with pack_for_container(files, extra) as tar:
            self.runtime.copy_in(container_id, tar)
        return container_id

    def discard(self, container_id: str) -> None:
        self.runtime.remove(container_id)
        if container_id in self.owned:
            self.owned.remove(container_id)

    def run_step(self, step: str, container_id: str, command: str) -> None:
        """Run one step in the running build container and wait for its verdict."""
        self.recorder.start_step(step)
        self.steps.start(step, time.monotonic())
        self.runner.exec(step, container_id, command)
        self.follow(lambda: step in self.steps.passed)
        self.recorder.end_step("ok", step)

    def run_alone(self, step: str, container_id: str) -> None:
        """Start a container whose own process is ``step`` and wait for its verdict."""
        self.recorder.start_step(step)
        self.steps.start(step, time.monotonic())
        self.check_cancelled()
        self.runtime.start(container_id)
        self.runner.container(step, container_id)
        self.follow(lambda: step in self.steps.passed)

    def start_check(self, command: str, same_files: tuple[str, Path] | None) -> None:
        """The type check in a container of its own (its own memory limit, no network) with the
        build container's files, beside the dev server: ``same_files`` (the image and folder the
        build container was made of) when nothing ran in it yet, else an image committed from it."""
        assert self.container_id
        files: Path | dict[str, bytes] = {}
        if same_files is not None:
            image, files = same_files
        else:
            image = self.runtime.commit(
                self.container_id,
                defaults.STEP_IMAGE_REPOSITORY,
                self.build_id[:12],
                step_image_labels(self.settings.instance_id, self.build_id),
            )
            self.images.append(image)
        checker = self.create(
            self.spec(kind=KIND_CHECK, image=image, command=["sh", "-c", command], networked=False), files
        )
        self.recorder.start_step("typecheck")
        self.steps.start("typecheck", time.monotonic(), required=True)
        self.runtime.start(checker)
        self.runner.container("typecheck", checker)

    def discard_check(self) -> None:
        """Remove the type check's container and image (the check passed)."""
        for container_id in [c for c in self.owned if c != self.container_id]:
            self.discard(container_id)
        for image in self.images:
            self.runtime.remove_image(image)
        self.images = []

    def follow(self, done: Callable[[], bool]) -> None:
        """Log the steps' output and judge their exits until ``done()``; raises BuildFailed
        (or an infrastructure fault) when a step fails or a clock runs out."""
        probe_at = 0.0
        while not done():
            event = self.runner.next(timeout=0.25)
            if isinstance(event, Line):
                self.lines[event.step].append(event.text)
                self.recorder.log(event.text)
            elif isinstance(event, Exited):
                if event.exit_code is None:
                    raise RuntimeUnavailable(f"the container of step {event.step} disappeared while it ran")
                failure = self.steps.exited(event)
                if failure is not None:
                    raise self.failed(failure)
                if event.step == "typecheck":
                    self.recorder.end_step("ok", "typecheck")
            elif isinstance(event, Fault):
                raise event.error
            self.check_cancelled()
            now = time.monotonic()
            overdue = self.steps.overdue(now)
            if overdue is not None:
                raise self.failed(overdue)
            if self.steps.should_probe and now >= probe_at:
                probe_at = now + 0.2
                self.steps.answered = self.answers()

    def failed(self, failure: Failure) -> Exception:
        lines = list(self.lines[failure.step])
        if failure.why is Why.BUILD_TIMEOUT:
            return BuildFailed(failure.step, build_timeout_message(failure.step, failure.seconds))
        if failure.why is Why.STEP_TIMEOUT:
            return BuildFailed(failure.step, timeout_message(failure.step, failure.seconds))
        if failure.step == "install" and is_network_fault(lines):
            return RegistryUnreachable(f"the package registry could not be reached: {failure_cause(lines)}")
        return BuildFailed(
            failure.step,
            failure_message(
                failure.step, failure.exit_code, lines, failure.oom_killed, self.settings.memory_limit
            ),
        )

    # -- dependencies ----------------------------------------------------------------

    def prepare_dependencies(self, install: InstallPlan, package: dict, workspace: Path) -> str:
        """The image to start the build container from: this project's node_modules from the
        cache, filled first on a miss (see orchestrator.pipeline.fill)."""
        s = self.settings
        cache = DependencyCache(s, self.runtime, get_redis())
        manifest = install_manifest(package)
        inputs = {name: (workspace / name).read_bytes() for name in install.inputs}
        base = self.runtime.image(s.node_image)
        base_id = base["Id"] if base else s.node_image
        key = cache_key(manifest, inputs, image_id=base_id, registry=s.npm_registry)
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
                context = FillContext(
                    runtime=self.runtime,
                    cache=cache,
                    log=self.recorder.log,
                    create=self.create,
                    run_alone=self.run_alone,
                    discard=self.discard,
                    spec=self.spec,
                    registry=hashlib.sha256(s.npm_registry.encode()).hexdigest()[:16],
                    store_volume=self.runtime.ensure_volume(store_name(s.instance_id)),
                )
                image = fill(context, key, install, package, manifest, inputs, base_id, self.build_id)
                self.recorder.end_step("ok", "install")
                self.recorder.log(f"Dependency cache: saved (key {key[:12]}) for the next builds")
                return image
        self.recorder.log(f"Dependencies from the cache (key {key[:12]}), filled meanwhile by another build")
        self.recorder.end_step("cached", "install")
        return found

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

    def check_cancelled(self) -> None:
        by = get_redis().get(defaults.CANCEL_KEY + self.build_id)
        if by is not None:
            raise Cancelled(by.decode() if isinstance(by, bytes) else str(by))

    def request(self, path: str, timeout: float = 2.0) -> httpx.Response | None:
        """GET ``path`` from the preview as a browser would (its Host), None when it fails."""
        host = "127.0.0.1" if self.settings.preview_bind in ("0.0.0.0", "") else self.settings.preview_bind
        try:
            return httpx.get(
                f"http://{host}:{self.port}{path}",
                timeout=timeout,
                headers={"Host": f"{self.settings.public_host}:{self.port}"},
            )
        except httpx.HTTPError:
            return None

    def answers(self) -> bool:
        response = self.request("/")
        if response is None or response.status_code >= 500:
            return False
        self.first_page = response.text
        return True

    def warm_up(self) -> None:
        """Have Vite transform the entry module and pre-bundle its dependencies while the build's
        cores are still there (see orchestrator.core.warmup): a visitor's first load is then quick."""
        started = time.monotonic()

        def get(path: str) -> str | None:
            response = self.request(path, timeout=WARM_UP_SECONDS)
            return response.text if response is not None and response.status_code < 400 else None

        paths = warm_up(get, self.first_page, WARM_UP_SECONDS)
        if paths:
            self.recorder.log(
                f"Warmed up {len(paths)} modules ({paths[0]} and what it imports) in "
                f"{time.monotonic() - started:.1f} s, before the CPU drops to the preview's share"
            )
        self.recorder.flush()

    def clean_up(self) -> None:
        shutil.rmtree(self.settings.workspaces_dir / self.build_id, ignore_errors=True)
        for container in [*self.owned, *([self.container_id] if self.container_id else [])]:
            try:
                self.runtime.remove(container)
            except OrchestratorError as exc:
                self.recorder.log(f"Could not remove container {container[:12]}: {exc}")
        for image in self.images:
            with contextlib.suppress(OrchestratorError):
                self.runtime.remove_image(image)
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
                f"{label(recorder.current_step)}: {exc}. Retrying in {delay} s "
                f"(attempt {record.attempts + 1} of {settings.max_attempts})"
            )
            gate.release(build_id)
            slot_held = False
            time.sleep(delay)  # back off before the build is admitted again
            gate.add(build_id, record.owner_id, build_score(record))
        else:
            recorder.fail(
                recorder.current_step,
                f"{label(recorder.current_step)}: {exc} (gave up after {record.attempts} attempts)",
            )
    except OrchestratorError as exc:
        build.clean_up()
        recorder.fail(recorder.current_step, f"{label(recorder.current_step)}: {exc}")
    except Exception as exc:
        build.clean_up()
        recorder.fail(recorder.current_step, f"{label(recorder.current_step)}: internal error: {exc!r}")
        raise
    finally:
        if slot_held:
            gate.release(build_id)
        get_redis().delete(defaults.CANCEL_KEY + build_id)
    return None
