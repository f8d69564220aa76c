"""The container runtime: the Docker engine and the scripted memory runtime behave alike for
the same commands (the memory runtime is given scripts that say what those commands do)."""

from __future__ import annotations

import io
import tarfile
import time
import uuid

import pytest

from orchestrator.adapters.memory_runtime import MemoryRuntime
from orchestrator.adapters.memory_scripts import Script
from orchestrator.adapters.runtime import HOLD, ContainerSpec, Runtime
from orchestrator.config import Settings
from orchestrator.core import defaults
from orchestrator.core.exceptions import RuntimeUnavailable
from tests.conftest import require

PRINT_AND_FAIL = "echo hello; echo world; exit 3"
PRINT_AND_PASS = "echo done"
SLOW = "sleep 0.3; exit 0"
# docker-py leaves the socket of a followed log or exec stream to the garbage collector.
pytestmark = [
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

SCRIPTS = {
    PRINT_AND_FAIL: Script(("hello", "world"), exit_code=3),
    PRINT_AND_PASS: Script(("done",), exit_code=0),
    SLOW: Script((), exit_code=0, seconds=0.3),
}


@pytest.fixture(params=[pytest.param("memory"), pytest.param("docker", marks=pytest.mark.integration)])
def runtime(request, settings: Settings):
    if request.param == "memory":
        yield MemoryRuntime(settings, SCRIPTS)
        return
    from orchestrator.adapters.docker_runtime import DockerRuntime
    from orchestrator.core.exceptions import RuntimeUnavailable

    docker = DockerRuntime(settings)
    try:
        docker.check()
        problem = ""
    except RuntimeUnavailable as exc:
        problem = str(exc)
    require(not problem, f"the Docker engine with the build image ({problem})")
    yield docker
    for container in docker.list_ours():
        docker.remove(container["Id"])
    docker.close()


def spec(
    command: list[str] | None = None, build_id: str | None = None, image: str | None = None
) -> ContainerSpec:
    """A container of a build of its own (Docker names containers after their build)."""
    build_id = build_id or f"contract-{uuid.uuid4().hex[:12]}"
    return ContainerSpec(
        build_id, "contract-site", None, {}, {}, image=image, command=command, networked=False
    )


def wait_for_exit(runtime: Runtime, container_id: str):
    state = runtime.wait(container_id, timeout=30)
    assert state is not None and not state.running
    return state


def test_a_container_process_reports_its_output_and_its_exit_code(runtime: Runtime) -> None:
    container = runtime.create_build_container(spec(["sh", "-c", PRINT_AND_FAIL]))
    runtime.start(container)
    state = wait_for_exit(runtime, container)
    assert state.exit_code == 3 and not state.oom_killed
    assert list(runtime.log_lines(container)) == ["hello", "world"]


def test_a_created_container_is_not_running(runtime: Runtime) -> None:
    container = runtime.create_build_container(spec())
    state = runtime.state(container)
    assert state is not None and not state.running


def test_a_held_container_runs_until_removed(runtime: Runtime) -> None:
    container = runtime.create_build_container(spec(HOLD))
    runtime.start(container)
    state = runtime.state(container)
    assert state is not None and state.running
    runtime.remove(container)
    assert runtime.state(container) is None


def test_traffic_is_counted_only_while_a_container_runs(runtime: Runtime) -> None:
    held = runtime.create_build_container(spec(HOLD))
    assert runtime.traffic(held) is None  # created, not started
    runtime.start(held)
    assert isinstance(runtime.traffic(held), int)
    runtime.remove(held)
    assert runtime.traffic(held) is None
    ended = runtime.create_build_container(spec(["sh", "-c", PRINT_AND_PASS]))
    runtime.start(ended)
    wait_for_exit(runtime, ended)
    assert runtime.traffic(ended) is None  # stopped (as when another gc stopped it meanwhile)


def test_a_stopped_container_keeps_its_files_and_starts_again(runtime: Runtime) -> None:
    """What a sleeping preview is: stopped, its files kept, its own process started again
    (what was exec'd in it, the dev server, ends with the stop)."""
    container = runtime.create_build_container(spec(HOLD))
    runtime.copy_in(container, tar_of("tmp/kept.txt", b"kept"))
    runtime.start(container)
    exec_id, _ = runtime.exec_start(container, ["sleep", "600"], detach=True)
    runtime.stop(container, timeout=1)
    state = runtime.state(container)
    assert state is not None and not state.running
    assert runtime.exec_exit_code(exec_id) is not None
    runtime.stop(container)  # again: not an error
    assert runtime.read_file(container, "/tmp/kept.txt") == b"kept"
    runtime.start(container)
    state = runtime.state(container)
    assert state is not None and state.running
    assert runtime.read_file(container, "/tmp/kept.txt") == b"kept"
    runtime.remove(container)
    with pytest.raises(RuntimeUnavailable):
        runtime.stop(container)


def test_removing_twice_is_not_an_error(runtime: Runtime) -> None:
    container = runtime.create_build_container(spec())
    runtime.remove(container)
    runtime.remove(container)
    assert runtime.state(container) is None


def test_an_exec_reports_its_lines_then_its_exit_code(runtime: Runtime) -> None:
    container = runtime.create_build_container(spec(HOLD))
    runtime.start(container)
    exec_id, lines = runtime.exec_start(container, ["sh", "-c", PRINT_AND_FAIL])
    assert list(lines) == ["hello", "world"]
    code = None
    for _ in range(50):
        code = runtime.exec_exit_code(exec_id)
        if code is not None:
            break
        time.sleep(0.1)
    assert code == 3


def test_an_exec_runs_while_it_takes_its_time(runtime: Runtime) -> None:
    container = runtime.create_build_container(spec(HOLD))
    runtime.start(container)
    exec_id, _ = runtime.exec_start(container, ["sh", "-c", SLOW], detach=True)
    assert runtime.exec_exit_code(exec_id) is None
    time.sleep(0.6)
    assert runtime.exec_exit_code(exec_id) == 0


def test_a_containers_labels_find_it(runtime: Runtime, settings: Settings) -> None:
    container = runtime.create_build_container(spec(build_id="labelled-build"))
    ours = runtime.list_ours(build_id="labelled-build")
    assert [c["Id"] for c in ours] == [container]
    labels = ours[0]["Labels"]
    ns = defaults.LABEL_NAMESPACE
    assert labels[f"{ns}.instance"] == settings.instance_id and labels[f"{ns}.website-id"] == "contract-site"
    assert runtime.containers_of("labelled-build") == [container]
    assert runtime.containers_of("another-build") == []


def test_files_copied_in_can_be_read_back(runtime: Runtime) -> None:
    container = runtime.create_build_container(spec())
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = b"<h1>hi</h1>"
        info = tarfile.TarInfo("tmp/index.html")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    runtime.copy_in(container, buffer)
    assert runtime.read_file(container, "/tmp/index.html") == b"<h1>hi</h1>"
    assert runtime.read_file(container, "/tmp/none.html") is None


def test_the_cpu_limit_of_a_container_changes(runtime: Runtime) -> None:
    container = runtime.create_build_container(spec(HOLD))
    runtime.start(container)
    runtime.set_cpus(container, 500_000_000)
    assert runtime.limits(container)["nano_cpus"] == 500_000_000
    assert runtime.limits(container)["memory"] == 512 * 2**20


def test_a_committed_image_carries_its_labels_and_is_kept_while_used(runtime: Runtime) -> None:
    container = runtime.create_build_container(spec(["sh", "-c", PRINT_AND_PASS]))
    label = f"{defaults.LABEL_NAMESPACE}.contract"
    image = runtime.commit(container, None, None, {label: "yes"})
    assert runtime.image(image) is not None
    assert image in [found["Id"] for found in runtime.images(f"{label}=yes")]
    user = runtime.create_build_container(
        ContainerSpec("contract-build", "contract-site", None, {}, {}, image=image)
    )
    assert runtime.remove_image(image) is False
    runtime.remove(user)
    runtime.remove(container)
    assert runtime.remove_image(image) is True
    assert runtime.image(image) is None


def test_a_volume_is_made_once_and_removed(runtime: Runtime) -> None:
    name = "website-orchestrator-contract-volume"
    assert runtime.ensure_volume(name) == name
    assert runtime.ensure_volume(name) == name
    assert runtime.remove_volume(name) is True


def test_a_step_whose_record_the_engine_lost_is_an_engine_fault(runtime: Runtime) -> None:
    from orchestrator.core.exceptions import RuntimeUnavailable

    with pytest.raises(RuntimeUnavailable, match="no record of the step's process"):
        runtime.exec_exit_code("0" * 64)  # as after an engine restart: Docker forgot every exec


def tar_of(name: str, data: bytes) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def test_the_engine_says_how_many_cpus_and_how_much_memory_its_machine_has(runtime: Runtime) -> None:
    cpus, memory = runtime.capacity()
    assert cpus >= 1 and memory >= 256 << 20
