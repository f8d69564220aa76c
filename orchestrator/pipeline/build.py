"""The stages of one build, from upload to a live preview, in order:

1. extract the upload into the build's workspace (orchestrator.adapters.uploads);
2. reuse the outcome of an identical recent build when there is one (orchestrator.pipeline.reuse);
3. decide the commands (orchestrator.core.plan);
4. take node_modules from the dependency cache, filling it first on a miss
   (orchestrator.pipeline.dependencies);
5. create the build container from that image, with every idle core, and run each step in it
   as a process of its own: the project's install scripts (``docker exec``), then the dev
   server (a detached exec) beside the type check (a container of its own, with its own memory
   limit, from the same files). Each verdict is the exit code Docker reports
   (orchestrator.core.follower); the output is only logged;
6. once the server answers, warm it up; once the type check passed, drop the container to the
   preview's CPU share: live.

The preview container keeps running after the job ends (orchestrator.pipeline.job).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from orchestrator.adapters.network import registry_access
from orchestrator.adapters.runtime import KIND_CHECK
from orchestrator.adapters.uploads import extract_upload
from orchestrator.context import Context
from orchestrator.core import defaults
from orchestrator.core.advisories import locked_vite, pinned_vite, refusal
from orchestrator.core.disk_quota import disk_mode
from orchestrator.core.exceptions import BuildFailed
from orchestrator.core.installs import LOCKFILES
from orchestrator.core.plan import BuildPlan, TypeCheck, make_plan
from orchestrator.core.status import Status, StepName
from orchestrator.core.upload_rules import UploadLimits
from orchestrator.pipeline.containers import BuildRun, remove_containers_of
from orchestrator.pipeline.dependencies import prepare_dependencies
from orchestrator.pipeline.egress import confine_egress
from orchestrator.pipeline.fill import step_image_labels
from orchestrator.pipeline.preview import PreviewProbe, adopt, after_live
from orchestrator.pipeline.reuse import find_identical
from orchestrator.state.models import BuildJob
from orchestrator.state.recorder import BuildRecorder

VITE_MANIFEST = f"{defaults.CONTAINER_WORKDIR}/node_modules/vite/package.json"


def _version_of(manifest: bytes | None) -> str | None:
    import json

    try:
        version = json.loads(manifest or b"{}").get("version")
    except (ValueError, AttributeError):
        return None
    return version if isinstance(version, str) else None


class ReusedFailure(Exception):
    """An upload identical to a recent build that failed: that failure is the answer."""

    def __init__(self, previous: BuildJob) -> None:
        super().__init__(previous.error or "failed")
        self.previous = previous


class Build(BuildRun):
    def __init__(self, ctx: Context, recorder: BuildRecorder, record: BuildJob) -> None:
        super().__init__(ctx, recorder, record.id, record.website_id)
        self.record = record
        self.probe = PreviewProbe(self)
        self.answers = self.probe.answers

    def run(self) -> str:
        s = self.ctx.settings
        self.recorder.start_step(StepName.EXTRACT)
        self.remove_leftovers()
        workspace = self.workspace
        limits = UploadLimits(s.max_upload_bytes, s.max_unpacked_bytes, s.max_files)
        extracted = extract_upload(s.uploads_dir / f"{self.build_id}.zip", workspace, limits)
        self.recorder.log(f"Extracted {len(extracted.files)} files")
        self.recorder.log(f"Host: {self.ctx.host_id}: {self.record.placement or 'its worker took the build'}")
        for note in extracted.notes:
            self.recorder.log(f"Upload: {note}")
        self.recorder.update(files_hash=extracted.files_hash)
        self.ctx.runtime.check()
        self.check_cancelled()

        previous = (
            None if self.record.rebuild else find_identical(self.ctx, self.record, extracted.files_hash)
        )
        if previous is not None and previous.status == Status.FAILED:
            raise ReusedFailure(previous)
        if (
            previous is not None
            and previous.status == Status.RUNNING
            and previous.website_id == self.website_id
        ):
            url = adopt(self, previous)
            if url is not None:
                return url

        self.port = self.ctx.port_pool().allocate(self.port_owner)
        lockfile = next((f for f in LOCKFILES if f in extracted.files), None)
        lockfile_text = (workspace / lockfile).read_text(errors="replace") if lockfile else None
        if extracted.package is not None:  # what the upload pins, before anything is installed
            self.refuse_vulnerable_vite(
                locked_vite(lockfile, lockfile_text) or pinned_vite(extracted.package)
            )
        plan = make_plan(extracted.files, extracted.package, self.port, lockfile_text)
        typecheck = self.typecheck(plan, previous)
        self.access = registry_access(s)
        for note in self.access.notes:
            self.recorder.log(f"Registry: {note}")
        self.recorder.log(f"Egress: {confine_egress(self.ctx, self.access)}")
        self.recorder.log(f"Disk: {disk_mode(s.disk_quota_mb << 20)}")
        self.env = {**(plan.install.env if plan.install else {}), **self.access.env}

        image = None
        if plan.install is not None:
            self.recorder.log(f"Dependencies: {plan.install.manager} ({plan.install.command})")
            if plan.install.cacheable:
                assert extracted.package is not None
                image = prepare_dependencies(self, plan.install, extracted.package, workspace)
            else:
                self.recorder.log(f"Dependency cache not used: {plan.install.why_not_cached}")
        self.start_container(image, workspace, plan.serve)
        assert self.container_id
        if plan.install is None:
            self.recorder.skip_step(StepName.INSTALL, "No package.json: nothing to install")
        elif image is None:
            self.run_step(StepName.INSTALL, self.container_id, plan.install.command)
        elif plan.install.lifecycle:
            self.run_step(StepName.INSTALL_SCRIPTS, self.container_id, plan.install.lifecycle)
        if typecheck.command:
            # The build container's files as they are now: the upload on the cached image, unless
            # an install ran in it (an uncached one, or the project's install scripts).
            untouched = not (plan.install and plan.install.lifecycle)
            self.start_check(typecheck.command, (image, workspace) if image and untouched else None)
        else:
            self.recorder.skip_step(StepName.TYPECHECK, typecheck.reason)
        if plan.install is not None:  # what was installed, whatever the ranges and lockfile said
            installed = self.ctx.runtime.read_file(self.container_id, VITE_MANIFEST)
            self.refuse_vulnerable_vite(_version_of(installed))
        self.recorder.start_step(StepName.SERVE, alongside=typecheck.command is not None)
        self.steps.start(StepName.SERVE, time.monotonic())
        self.runner.service(StepName.SERVE, self.container_id, plan.serve)
        self.remove_workspace()  # the containers have the files; the upload stays
        self.follow(lambda: self.steps.answered)
        self.probe.warm_up()  # while the type check goes on in its own container
        self.follow(lambda: self.steps.live)
        self.discard_check()
        self.ctx.runtime.set_cpus(self.container_id, s.nano_cpus)
        url = s.preview_url(self.port)
        self.recorder.log(f"Preview live at {url}")
        self.recorder.running(url)
        after_live(self)
        return url

    def refuse_vulnerable_vite(self, version: str | None) -> None:
        """Fail the build when this Vite has published holes in its development server."""
        if version is None or not self.ctx.settings.refuse_vulnerable_vite:
            return
        found = refusal(version)
        if found is not None:
            raise BuildFailed(StepName.INSTALL, found.message)

    def remove_leftovers(self) -> None:
        """Remove what an earlier attempt of this build left (it was killed, or the engine was
        away when it cleaned up): its containers, whose names this attempt's would meet, and
        its workspace."""
        leftovers = remove_containers_of(self.ctx, self.build_id)
        if leftovers:
            self.recorder.log(f"Removed {leftovers} containers an earlier attempt left")
        folders = self.workspace.parent
        for earlier in sorted(folders.iterdir()) if folders.is_dir() else []:
            shutil.rmtree(earlier, ignore_errors=True)

    def typecheck(self, plan: BuildPlan, previous: BuildJob | None) -> TypeCheck:
        """The plan's type check, unless an identical build already passed it."""
        if previous is not None and plan.typecheck.command:
            self.recorder.update(reused_from=previous.id)
            return TypeCheck(None, f"type check skipped: build {previous.id} type checked these very files")
        if plan.typecheck.command:
            self.recorder.log(f"Type check: {plan.typecheck.reason}")
        return plan.typecheck

    def start_container(self, image: str | None, workspace: Path, serve: str) -> None:
        s = self.ctx.settings
        assert self.port is not None
        env = {"PORT": str(self.port)}
        if s.public_host not in ("localhost", "127.0.0.1"):
            env["__VITE_ADDITIONAL_SERVER_ALLOWED_HOSTS"] = s.public_host
        spec = self.spec(port=self.port, image=image, env_extra=env, serve=serve)
        self.container_id = self.create(spec, workspace)
        self.recorder.update(allocated_port=self.port, container_id=self.container_id)
        self.check_cancelled()
        self.ctx.runtime.start(self.container_id)
        self.recorder.log(
            f"Container {self.container_id[:12]} started (memory {s.memory_limit}, "
            f"{s.build_nano_cpus / 1e9:g} CPU while building, {s.nano_cpus / 1e9:g} once live)"
        )

    def start_check(self, command: str, same_files: tuple[str, Path] | None) -> None:
        """The type check in a container of its own (its own memory limit, no network) with the
        build container's files, beside the dev server: ``same_files`` (the image and folder the
        build container was made of) when nothing ran in it yet, else an image committed from it."""
        assert self.container_id
        files: Path | dict[str, bytes] = {}
        if same_files is not None:
            image, files = same_files
        else:
            image = self.ctx.runtime.commit(
                self.container_id,
                defaults.STEP_IMAGE_REPOSITORY,
                self.build_id[:12],
                step_image_labels(self.ctx.settings.instance_id, self.build_id),
            )
            self.images.append(image)
        checker = self.create(
            self.spec(kind=KIND_CHECK, image=image, command=["sh", "-c", command], networked=False), files
        )
        self.recorder.start_step(StepName.TYPECHECK)
        self.steps.start(StepName.TYPECHECK, time.monotonic(), required=True)
        self.ctx.runtime.start(checker)
        self.runner.container(StepName.TYPECHECK, checker)

    def discard_check(self) -> None:
        """Remove the type check's container and image (the check passed)."""
        for container_id in [c for c in self.owned if c != self.container_id]:
            self.discard(container_id)
        for image in self.images:
            self.ctx.runtime.remove_image(image)
        self.images = []
