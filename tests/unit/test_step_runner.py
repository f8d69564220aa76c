"""The step runner over the scripted runtime: what Docker would report about each kind of step
process becomes events on one queue (orchestrator.pipeline.step_runner)."""

from __future__ import annotations

import pytest

from orchestrator.adapters.memory_runtime import MemoryRuntime
from orchestrator.adapters.memory_scripts import Script
from orchestrator.adapters.runtime import HOLD, ContainerSpec
from orchestrator.config import Settings
from orchestrator.core.exceptions import RuntimeUnavailable
from orchestrator.core.steps import Exited, Line
from orchestrator.pipeline.step_runner import Fault, StepRunner

SCRIPTS = {
    "npm rebuild": Script(("rebuilt esbuild",), exit_code=0),
    "broken": Script(("boom",), exit_code=7),
    "vite": Script(("ready",), exit_code=None),
    "tsc": Script(("src/a.ts: error TS1",), exit_code=2),
    "hungry": Script((), oom=True),
}


@pytest.fixture
def runtime(tmp_path) -> MemoryRuntime:
    settings = Settings(data_dir=tmp_path, npm_registry="http://127.0.0.1:4873/", instance_id="unit")
    return MemoryRuntime(settings, SCRIPTS)


def events_until_exit(runner: StepRunner, limit: int = 50) -> list:
    found = []
    for _ in range(limit):
        event = runner.next(timeout=2)
        found.append(event)
        if isinstance(event, Exited | Fault) or event is None:
            return found
    return found


def held(runtime: MemoryRuntime, command: list[str] | None = None) -> str:
    container = runtime.create_build_container(ContainerSpec("b", "w", None, {}, {}, command=command or HOLD))
    runtime.start(container)
    return container


def test_an_exec_step_reports_its_lines_then_its_exit_code(runtime: MemoryRuntime) -> None:
    runner = StepRunner(runtime, "b")
    runner.exec("lifecycle", held(runtime), "npm rebuild esbuild")
    assert events_until_exit(runner) == [Line("lifecycle", "rebuilt esbuild"), Exited("lifecycle", 0, False)]


def test_a_failing_exec_step_reports_its_code(runtime: MemoryRuntime) -> None:
    runner = StepRunner(runtime, "b")
    runner.exec("install", held(runtime), "broken")
    assert events_until_exit(runner)[-1] == Exited("install", 7, False)


def test_a_service_runs_on_and_its_output_is_the_containers(runtime: MemoryRuntime) -> None:
    runner = StepRunner(runtime, "b")
    runner.service("serve", held(runtime), "vite --port 41000")
    assert runner.next(timeout=2) == Line("serve", "ready")
    assert runner.next(timeout=0.2) is None  # still running: no exit


def test_a_container_step_reports_docker_exit_code(runtime: MemoryRuntime) -> None:
    runner = StepRunner(runtime, "b")
    container = runtime.create_build_container(
        ContainerSpec("b", "w", None, {}, {}, command=["sh", "-c", "tsc"])
    )
    runtime.start(container)
    runner.container("typecheck", container)
    assert events_until_exit(runner)[-1] == Exited("typecheck", 2, False)


def test_a_container_step_killed_for_memory_says_so(runtime: MemoryRuntime) -> None:
    runner = StepRunner(runtime, "b")
    container = runtime.create_build_container(ContainerSpec("b", "w", None, {}, {}, command=["hungry"]))
    runtime.start(container)
    runner.container("typecheck", container)
    assert events_until_exit(runner)[-1] == Exited("typecheck", 137, True)


def test_a_step_that_cannot_start_raises_at_once(runtime: MemoryRuntime) -> None:
    runner = StepRunner(runtime, "b")
    container = held(runtime)
    runtime.available = False
    with pytest.raises(RuntimeUnavailable):
        runner.exec("install", container, "npm rebuild")


def test_an_exec_in_a_container_that_is_not_running_is_refused(runtime: MemoryRuntime) -> None:
    container = runtime.create_build_container(ContainerSpec("b", "w", None, {}, {}))
    with pytest.raises(RuntimeUnavailable, match="not running"):
        runtime.exec_start(container, ["true"])


def test_a_removed_containers_exec_ends_as_killed(runtime: MemoryRuntime) -> None:
    container = held(runtime)
    exec_id, _ = runtime.exec_start(container, ["vite"], detach=True)
    runtime.remove(container)
    assert runtime.exec_exit_code(exec_id) == 137


def test_a_down_engine_fails_every_call(runtime: MemoryRuntime) -> None:
    runtime.available = False
    with pytest.raises(RuntimeUnavailable):
        runtime.ping()
    with pytest.raises(RuntimeUnavailable):
        runtime.list_ours()


def test_the_first_script_whose_piece_is_in_the_command_decides(runtime: MemoryRuntime) -> None:
    assert runtime.script(["sh", "-c", "npm rebuild esbuild"]).lines == ("rebuilt esbuild",)
    assert runtime.script(HOLD).exit_code is None
    assert runtime.script(["true"]) == Script()


def test_a_missing_build_image_fails_the_check(runtime: MemoryRuntime) -> None:
    runtime.check()
    assert runtime.remove_image(runtime.settings.node_image)
    with pytest.raises(RuntimeUnavailable, match="missing"):
        runtime.check()
