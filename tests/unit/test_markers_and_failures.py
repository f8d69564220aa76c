from orchestrator.build import failure_cause, failure_message
from orchestrator.markers import Marker, parse_marker
from orchestrator.runtime import ContainerState


def test_markers():
    assert parse_marker("::orchestrator:: install start") == Marker("install", "start")
    assert parse_marker("::orchestrator:: typecheck failed 2") == Marker("typecheck", "failed", "2")
    assert parse_marker("::orchestrator:: typecheck skipped no tsconfig") == Marker(
        "typecheck", "skipped", "no tsconfig"
    )
    assert parse_marker("added 28 packages in 19s") is None
    assert parse_marker("::orchestrator:: install exploded") is None


def test_the_compiler_line_is_the_cause():
    lines = [
        "> tsc -b",
        "src/App.tsx(5,7): error TS2322: Type 'number' is not assignable to type 'string'.",
        "",
    ]
    assert failure_cause(lines).startswith("src/App.tsx(5,7): error TS2322")


def test_npm_boilerplate_is_not_the_cause():
    lines = [
        "npm error code E404",
        "npm error 404 Not Found - GET https://registry.npmjs.org/no-such-pkg - Not found",
        "npm error A complete log of this run can be found in: /home/builder/.npm/_logs/x.log",
    ]
    assert "404 Not Found" in failure_cause(lines)


def test_ansi_codes_are_stripped_from_the_cause():
    assert failure_cause(["\x1b[31merror\x1b[0m: boom"]) == "error: boom"


def test_out_of_memory_is_named():
    oom = ContainerState(running=False, exit_code=10, oom_killed=True, status="exited")
    assert failure_message("install", 137, [], oom) == (
        "installing dependencies failed: ran out of memory (512 MB limit)"
    )


def test_a_dead_server_is_said_so():
    state = ContainerState(running=False, exit_code=1, oom_killed=False, status="exited")
    message = failure_message("serve", 1, ["Error: Cannot find module 'x'"], state)
    assert message == (
        "starting the development server failed: the server exited before it answered "
        "(exit code 1): Error: Cannot find module 'x'"
    )


def test_npm_404_names_the_package():
    lines = [
        "npm error code E404",
        "npm error 404 Not Found - GET https://registry.npmjs.org/wob-nope - Not found",
        "npm error 404",
        "npm error 404  'wob-nope@1.0.0' is not in this registry.",
        "npm error 404 Note that you can also install from a",
        "npm error 404 tarball, folder, http url, or git url.",
    ]
    assert (
        failure_cause(lines)
        == "npm error 404 Not Found - GET https://registry.npmjs.org/wob-nope - Not found"
    )


def test_registry_outages_are_told_apart_from_the_projects_errors():
    from orchestrator.build import is_network_fault

    assert is_network_fault(["npm error code ECONNREFUSED", "npm error errno ECONNREFUSED"])
    assert is_network_fault(["npm error code EAI_AGAIN"])
    assert is_network_fault(["npm error network timeout at: https://registry.npmjs.org/react"])
    assert not is_network_fault(["npm error code E404", "npm error 404 Not Found - GET https://x/y"])
    assert not is_network_fault(["src/App.tsx(1,1): error TS2322: Type 'string' is not assignable"])
