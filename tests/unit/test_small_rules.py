"""Small rules the services rely on: tokens, identical uploads, upload paths, settings, keys."""

from __future__ import annotations

from datetime import timedelta

import pytest

from orchestrator.config import Settings
from orchestrator.context import Context
from orchestrator.coordination import keys
from orchestrator.core.exceptions import InvalidUpload, Unauthorized
from orchestrator.core.priority import build_score
from orchestrator.core.status import Status
from orchestrator.core.upload_rules import clean_path, common_prefix, is_system_junk
from orchestrator.pipeline.reuse import find_identical
from orchestrator.service.auth import Role, authenticate, is_admin
from orchestrator.state.models import ApiToken, BuildJob, Website, utcnow
from tests.unit.conftest import token

# -- tokens ------------------------------------------------------------------------------


def test_a_token_authenticates_its_holder(ctx: Context) -> None:
    record, secret = token(ctx, Role.ADMIN, "root")
    with ctx.session() as session:
        found = authenticate(session, secret)
    assert found.id == record.id and is_admin(found)


@pytest.mark.parametrize("secret", [None, "", "wob_not-a-token"])
def test_a_missing_or_unknown_token_is_refused(ctx: Context, secret: str | None) -> None:
    with pytest.raises(Unauthorized), ctx.session() as session:
        authenticate(session, secret)


def test_a_user_is_not_an_admin(ctx: Context, alice: ApiToken) -> None:
    assert not is_admin(alice)


def test_only_a_hash_of_the_token_is_kept(ctx: Context) -> None:
    record, secret = token(ctx)
    assert secret not in record.token_hash and secret.startswith("wob_")


# -- identical uploads -------------------------------------------------------------------


def earlier(
    ctx: Context,
    owner: ApiToken,
    status: Status,
    error_step: str | None = None,
    hours: float = 1,
    infrastructure: bool = False,
) -> str:
    with ctx.session() as session:
        site = Website(owner_id=owner.id or 0, name="s", type="static")
        session.add(site)
        session.flush()
        build = BuildJob(
            website_id=site.id,
            owner_id=owner.id or 0,
            project_type="static",
            status=status,
            files_hash="h",
            error_step=error_step,
            infrastructure_fault=infrastructure,
            completed_at=utcnow() - timedelta(hours=hours),
        )
        session.add(build)
        return build.id


def new_build(owner: ApiToken) -> BuildJob:
    return BuildJob(website_id="w", owner_id=owner.id or 0, project_type="static")


def test_a_recent_live_build_with_the_same_files_is_found(ctx: Context, alice: ApiToken) -> None:
    previous = earlier(ctx, alice, Status.RUNNING)
    found = find_identical(ctx, new_build(alice), "h")
    assert found is not None and found.id == previous


def test_a_build_older_than_the_window_is_not_reused(ctx: Context, alice: ApiToken) -> None:
    earlier(ctx, alice, Status.RUNNING, hours=48)
    assert find_identical(ctx, new_build(alice), "h") is None


def test_another_owners_build_is_not_reused(ctx: Context, alice: ApiToken) -> None:
    earlier(ctx, alice, Status.RUNNING)
    bob = token(ctx, Role.USER, "bob")[0]
    assert find_identical(ctx, new_build(bob), "h") is None


@pytest.mark.parametrize(
    ("step", "reused"), [("typecheck", True), ("lifecycle", True), ("extract", False), (None, False)]
)
def test_only_a_failure_of_the_files_own_steps_is_reported_again(
    ctx: Context, alice: ApiToken, step: str | None, reused: bool
) -> None:
    earlier(ctx, alice, Status.FAILED, error_step=step)
    assert (find_identical(ctx, new_build(alice), "h") is not None) is reused


def test_an_install_that_failed_through_the_infrastructure_is_not_replayed(
    ctx: Context, alice: ApiToken
) -> None:
    earlier(ctx, alice, Status.FAILED, error_step="install", infrastructure=True)
    assert find_identical(ctx, new_build(alice), "h") is None


# -- upload paths --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "junk"),
    [
        ("__MACOSX/src/._main.ts", True),
        ("src/._main.ts", True),
        (".DS_Store", True),
        ("docs/Thumbs.db", True),
        ("desktop.ini", True),
        ("src/main.ts", False),
        ("._", True),
        ("", False),
    ],
)
def test_what_an_operating_system_adds_is_junk(name: str, junk: bool) -> None:
    assert is_system_junk(name) is junk


@pytest.mark.parametrize(
    ("name", "clean"),
    [
        ("src\\main.ts", "src/main.ts"),
        ("./index.html", "index.html"),
        ("node_modules/vite/index.js", None),
        ("a/.git/config", None),
        ("a//b", "a/b"),
        ("", None),
    ],
)
def test_paths_are_made_relative_and_build_folders_dropped(name: str, clean: str | None) -> None:
    assert clean_path(name) == clean


@pytest.mark.parametrize("name", ["/etc/passwd", "C:/Windows/x", "../outside", "a/../../b", "a\x00b"])
def test_paths_that_leave_the_folder_are_refused(name: str) -> None:
    with pytest.raises(InvalidUpload):
        clean_path(name)


@pytest.mark.parametrize(
    ("paths", "prefix"),
    [
        (["site-main/index.html", "site-main/src/a.ts"], "site-main/"),
        (["index.html", "src/a.ts"], ""),
        (["a/index.html", "b/index.html"], ""),
        (["site/package.json", "package.json"], ""),
        ([], ""),
    ],
)
def test_one_top_folder_around_everything_is_removed(paths: list[str], prefix: str) -> None:
    assert common_prefix(paths) == prefix


# -- settings and keys ----------------------------------------------------------------------


def test_the_build_deadline_defaults_to_the_step_timeouts_added_up() -> None:
    settings = Settings(
        npm_registry="https://registry.example.com/", install_timeout=10, typecheck_timeout=5, serve_timeout=3
    )
    assert settings.build_timeout == 18


def test_a_build_never_gets_less_cpu_than_its_preview() -> None:
    settings = Settings(npm_registry="https://registry.example.com/", build_cpus=0)
    assert settings.build_nano_cpus == settings.nano_cpus == 250_000_000


def test_the_preview_url_names_the_public_host() -> None:
    settings = Settings(npm_registry="https://registry.example.com/", public_host="previews.example.com")
    assert settings.preview_url(41000) == "http://previews.example.com:41000/"


def test_an_unset_database_url_is_sqlite_in_the_data_folder(tmp_path) -> None:
    settings = Settings(npm_registry="https://registry.example.com/", data_dir=tmp_path)
    assert settings.sqlalchemy_url == f"sqlite:///{tmp_path.resolve()}/orchestrator.db"


@pytest.mark.parametrize(("raw", "text"), [(b"abc", "abc"), ("abc", "abc"), (None, None)])
def test_redis_answers_read_as_text(raw: bytes | str | None, text: str | None) -> None:
    assert keys.text(raw) == text


def test_every_key_is_ours() -> None:
    names = [v for k, v in vars(keys).items() if k.isupper() and isinstance(v, str) and k != "PREFIX"]
    assert names and all(name.startswith(keys.PREFIX) for name in names)


def test_an_earlier_build_of_the_same_priority_goes_first(alice: ApiToken) -> None:
    first = BuildJob(website_id="w", owner_id=1, project_type="static", priority=2, created_at=utcnow())
    later = BuildJob(
        website_id="w",
        owner_id=1,
        project_type="static",
        priority=2,
        created_at=utcnow() + timedelta(seconds=5),
    )
    assert build_score(first, 30) < build_score(later, 30)
    urgent = BuildJob(
        website_id="w",
        owner_id=1,
        project_type="static",
        priority=6,
        created_at=utcnow() + timedelta(seconds=5),
    )
    assert build_score(urgent, 30) < build_score(first, 30)
