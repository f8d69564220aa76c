"""What a build runs, decided from the uploaded files alone (no I/O here).

The worker runs each command as a step of its own in the build's containers
(orchestrator.pipeline.build, orchestrator.core.steps).
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from orchestrator.core.exceptions import InvalidUpload
from orchestrator.core.installs import InstallPlan, plan_install
from orchestrator.core.status import StepName


class ProjectType(StrEnum):
    VITE = "vite"
    STATIC = "static"


@dataclass(frozen=True)
class StepInfo:
    name: str
    label: str
    """The ``currentStep`` text a user sees."""
    progress: int
    """Progress (percent) reported when the step starts."""
    noun: str
    """What runs in the step, as a sentence names it ("the type check ran out of memory")."""


STEPS: tuple[StepInfo, ...] = (
    StepInfo(StepName.EXTRACT, "Extracting files", 10, "extraction"),
    StepInfo(StepName.INSTALL, "Installing dependencies", 30, "the install"),
    StepInfo(StepName.INSTALL_SCRIPTS, "Running the project's install scripts", 50, "the install scripts"),
    StepInfo(StepName.TYPECHECK, "Type checking", 60, "the type check"),
    StepInfo(StepName.SERVE, "Starting the development server", 80, "the development server"),
)
STEP_BY_NAME: dict[str, StepInfo] = {s.name: s for s in STEPS}
READY = StepInfo("ready", "Ready", 100, "the preview")

TYPE_CHECKERS = frozenset({"tsc", "vue-tsc", "svelte-check", "tsgo"})
"""Programs recognised as the type-checking part of a ``build`` script."""

TYPECHECK_SCRIPTS = ("typecheck", "type-check", "check")
"""Scripts that are the project's own type check, in order of preference."""

STATIC_VITE = "/opt/static-server/node_modules/.bin/vite"
"""The Vite that the image carries for sites with no package.json."""

_SHELL_METACHARACTERS = set("|;&<>`$(){}\\\n")


@dataclass(frozen=True)
class TypeCheck:
    command: str | None
    """Shell command to run, or None when the build has no type check."""
    reason: str
    """Why this command (or why none): written to the build log."""


@dataclass(frozen=True)
class BuildPlan:
    project_type: ProjectType
    install: InstallPlan | None
    typecheck: TypeCheck
    serve: str


def parse_package_json(raw: bytes | str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidUpload(f"package.json is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidUpload("package.json must hold a JSON object")
    return data


def _dependencies(package: Mapping[str, Any]) -> set[str]:
    names: set[str] = set()
    for key in ("dependencies", "devDependencies"):
        section = package.get(key)
        if isinstance(section, dict):
            names.update(section)
    return names


def detect_project_type(files: Collection[str], package: Mapping[str, Any] | None) -> ProjectType:
    """``vite`` for a package.json that depends on Vite, ``static`` for an index.html site."""
    if package is not None and "vite" in _dependencies(package):
        return ProjectType.VITE
    if "index.html" in files:
        return ProjectType.STATIC
    if package is not None:
        raise InvalidUpload(
            "package.json does not depend on vite: only Vite projects and static sites "
            "(an index.html at the top) can be previewed"
        )
    raise InvalidUpload(
        "no package.json and no index.html at the top of the upload: upload a Vite project "
        "or a static site whose index.html is at its root"
    )


def _typecheck_part(build_script: str) -> str | None:
    """The type-checking commands of a build script such as ``tsc -b && vite build``."""
    found = []
    for segment in build_script.split("&&"):
        segment = segment.strip()
        if not segment or _SHELL_METACHARACTERS & set(segment):
            continue
        try:
            words = shlex.split(segment)
        except ValueError:
            continue
        if len(words) > 1 and words[0] in ("npx", "pnpm", "yarn", "bunx"):
            words = words[2:] if words[1] == "exec" else words[1:]
        if words and words[0] in TYPE_CHECKERS:
            found.append(shlex.join(words))
    return " && ".join(found) or None


def detect_typecheck(files: Collection[str], package: Mapping[str, Any]) -> TypeCheck:
    """The project's own type check: a typecheck/check script, else the type checker of the
    build script, else ``tsc --noEmit`` for a tsconfig.json, else none."""
    scripts = package.get("scripts")
    scripts = scripts if isinstance(scripts, dict) else {}
    for name in TYPECHECK_SCRIPTS:
        if isinstance(scripts.get(name), str):
            return TypeCheck(f"npm run {name}", f'using the project\'s "{name}" script')
    build = scripts.get("build")
    if isinstance(build, str):
        part = _typecheck_part(build)
        if part:
            return TypeCheck(part, f'using the type check of the "build" script: {part}')
    if "tsconfig.json" in files:
        if "typescript" in _dependencies(package):
            return TypeCheck("tsc --noEmit", "tsconfig.json found: running tsc --noEmit")
        return TypeCheck(None, "type check skipped: tsconfig.json found but typescript is not a dependency")
    return TypeCheck(
        None,
        "type check skipped: no typecheck or check script, no type checker in the build script "
        "and no tsconfig.json",
    )


def serve_command(project_type: ProjectType, port: int) -> str:
    vite = STATIC_VITE if project_type is ProjectType.STATIC else "vite"
    return f"{vite} --host 0.0.0.0 --port {port} --strictPort --clearScreen false"


def make_plan(
    files: Collection[str], package: Mapping[str, Any] | None, port: int, lockfile_text: str | None = None
) -> BuildPlan:
    """Decide the whole build from the file list and the parsed package.json.

    The dev server listens on the same port inside the container as on the host, so
    that Vite's HMR client, which connects to the server's own port, works unchanged
    through the published port.
    """
    kind = detect_project_type(files, package)
    if kind is ProjectType.STATIC or package is None:
        skip = TypeCheck(None, "type check skipped: a static site has none")
        return BuildPlan(kind, None, skip, serve_command(kind, port))
    return BuildPlan(
        kind,
        plan_install(files, package, lockfile_text),
        detect_typecheck(files, package),
        serve_command(kind, port),
    )
