from orchestrator.core.failures import (
    build_timeout_message,
    failure_cause,
    failure_message,
    is_network_fault,
    memory_text,
    timeout_message,
)


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
        "npm error 404 Not Found - GET https://registry.example.com/no-such-pkg - Not found",
        "npm error A complete log of this run can be found in: /home/builder/.npm/_logs/x.log",
    ]
    assert "404 Not Found" in failure_cause(lines)


def test_ansi_codes_are_stripped_from_the_cause():
    assert failure_cause(["\x1b[31merror\x1b[0m: boom"]) == "error: boom"


def test_out_of_memory_is_named():
    assert failure_message("install", 137, [], oom_killed=True) == (
        "installing dependencies failed: the install ran out of memory (512 MB limit)"
    )
    assert failure_message("typecheck", 137, [], oom_killed=True, memory_limit="1g") == (
        "type checking failed: the type check ran out of memory (1 GB limit)"
    )
    assert "most likely out of memory" in failure_message("lifecycle", 137, [])


def test_a_dead_server_is_said_so():
    message = failure_message("serve", 1, ["Error: Cannot find module 'x'"])
    assert message == (
        "starting the development server failed: the server exited before it answered "
        "(exit code 1): Error: Cannot find module 'x'"
    )


def test_npm_404_names_the_package():
    lines = [
        "npm error code E404",
        "npm error 404 Not Found - GET https://registry.example.com/wob-nope - Not found",
        "npm error 404",
        "npm error 404  'wob-nope@1.0.0' is not in this registry.",
        "npm error 404 Note that you can also install from a",
        "npm error 404 tarball, folder, http url, or git url.",
    ]
    assert (
        failure_cause(lines)
        == "npm error 404 Not Found - GET https://registry.example.com/wob-nope - Not found"
    )


def test_registry_outages_are_told_apart_from_the_projects_errors():
    assert is_network_fault(["npm error code ECONNREFUSED", "npm error errno ECONNREFUSED"])
    assert is_network_fault(["npm error code EAI_AGAIN"])
    assert is_network_fault(["npm error network timeout at: https://registry.example.com/react"])
    assert not is_network_fault(["npm error code E404", "npm error 404 Not Found - GET https://x/y"])
    assert not is_network_fault(["src/App.tsx(1,1): error TS2322: Type 'string' is not assignable"])


def test_clocks_running_out_are_said_so():
    assert timeout_message("typecheck", 300) == "timed out while type checking after 300 s"
    assert build_timeout_message("serve", 1020) == (
        "the build took longer than its 1020 s limit (while starting the development server)"
    )
    assert memory_text("512m") == "512 MB" and memory_text("odd") == "odd"


def test_a_step_with_no_output_says_so():
    assert failure_message("typecheck", 2, []) == "type checking failed (exit code 2): no output"
