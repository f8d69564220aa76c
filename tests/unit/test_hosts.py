"""Many hosts over the in-memory context: two hosts (their own settings, engine and ports)
sharing one database and one set of stores, as two machines share PostgreSQL and Redis."""

from __future__ import annotations

import dataclasses
import io

import pytest

from orchestrator.adapters.memory_runtime import MemoryRuntime
from orchestrator.adapters.runtime import HOLD, ContainerSpec
from orchestrator.context import Context
from orchestrator.coordination.cache_index import MemoryCacheIndex
from orchestrator.coordination.hosts import MemoryHostRegistry
from orchestrator.coordination.ports import MemoryPortStore
from orchestrator.core.exceptions import RuntimeUnavailable
from orchestrator.core.hosts import HOST_TTL, check_host_id, default_host_id, lost_hosts, place
from orchestrator.core.ports import attempt_owner
from orchestrator.core.status import Status
from orchestrator.pipeline.job import Heartbeat
from orchestrator.scheduling.dispatcher import dispatch_round, recover_lost
from orchestrator.scheduling.queue import MemoryJobs, reconcile
from orchestrator.service.gc import collect
from orchestrator.service.submissions import create_website
from orchestrator.state import hosts as host_state
from orchestrator.state.hosts import overview, register, stop_lost_hosts, this_host
from orchestrator.state.models import ApiToken, BuildJob, Host, Website, utcnow
from tests.unit.conftest import record, site_zip

IDLE = (10.0, 10.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class Hosts:
    a: Context
    b: Context
    clock: Clock


@pytest.fixture
def hosts(ctx: Context) -> Hosts:
    """Host "a" (the unit tests' context) and host "b": one database, one set of stores, each
    its own engine, preview ports and cache index; each reaches the other's engine."""
    clock = Clock()
    ports = {"a": ctx.stores.ports, "b": MemoryPortStore()}
    registry = MemoryHostRegistry(clock)
    shared = dataclasses.replace(
        ctx.stores, hosts=registry, ports_on=lambda host: ports.setdefault(host, MemoryPortStore())
    )
    ctx.settings = ctx.settings.model_copy(update={"host_id": "a"})
    ctx.stores = shared
    b_settings = ctx.settings.model_copy(update={"host_id": "b", "host_address": "198.51.100.2"})
    b = Context(
        b_settings,
        ctx.database,
        dataclasses.replace(shared, ports=ports["b"], cache=MemoryCacheIndex()),
        MemoryRuntime(b_settings),
        port_is_free=lambda _: True,
    )
    ctx.runtimes["b"], b.runtimes["a"] = b.runtime, ctx.runtime
    return Hosts(ctx, b, clock)


def upload(ctx: Context, owner: ApiToken, website_id: str | None = None) -> BuildJob:
    with ctx.session() as session:
        _, build = create_website(
            ctx, session, owner, [("site.zip", io.BytesIO(site_zip()))], website_id=website_id
        )
    return build


def preview_on(ctx: Context, owner: ApiToken, port: int = 41000) -> BuildJob:
    """A live preview on ``ctx``'s host: its container running there, its port held there."""
    with ctx.session() as session:
        site = Website(owner_id=owner.id or 0, name="site", type="static")
        session.add(site)
        session.flush()
        build = BuildJob(
            website_id=site.id, owner_id=owner.id or 0, project_type="static", host_id=ctx.host_id
        )
        container = ctx.runtime.create_build_container(
            ContainerSpec(build.id, site.id, port, {}, {}, command=HOLD)
        )
        ctx.runtime.start(container)
        build.status, build.container_id, build.allocated_port = Status.RUNNING, container, port
        build.attempts, build.completed_at = 1, utcnow()
        session.add(build)
    ctx.stores.ports.claim(port, attempt_owner(build.id, 1))
    return build


# -- the pure rules ------------------------------------------------------------------


def test_a_host_id_is_the_machines_name_and_a_second_engine_gets_a_digest() -> None:
    assert default_host_id("Build-01.example.com", None) == "build-01-example-com"
    assert default_host_id("ci", "unix:///var/run/docker.sock") == "ci"
    other = default_host_id("ci", "unix:///tmp/second/docker.sock")
    assert other.startswith("ci-") and other != default_host_id("ci", "tcp://198.51.100.7:2376")
    assert check_host_id("host-2") == "host-2"
    with pytest.raises(ValueError, match="letters, digits and dashes"):
        check_host_id("a host:with/slashes")


def test_nothing_is_lost_while_redis_is_younger_than_a_beat() -> None:
    assert lost_hosts({"a", "b"}, {"a"}, HOST_TTL - 1) == set()
    assert lost_hosts({"a", "b"}, {"a"}, HOST_TTL + 1) == {"b"}


def test_placement_prefers_the_previous_host_only_when_it_lives_and_has_room() -> None:
    assert place("a", None, (False, None), {"a", "b"}).host == "a"
    assert place("a", "a", (True, None), {"a", "b"}).host == "a"
    gone = place("a", "b", (True, None), {"a"})
    assert gone.host == "a" and "no live worker" in gone.why
    short = place("a", "b", (True, "waiting for memory"), {"a", "b"})
    assert short.host == "a" and "is short (waiting for memory)" in short.why
    assert place("a", "b", (False, None), {"a", "b"}).host == "a"
    there = place("a", "b", (True, None), {"a", "b"})
    assert there.host == "b" and "previous build ran there" in there.why
    lost = place("a", "b", (True, None), {"a", "b"}, lost_on="b")
    assert lost.host == "a" and "last attempt was lost on host b" in lost.why


# -- records ------------------------------------------------------------------------


def test_hosts_register_and_the_first_takes_over_the_builds_from_before_hosts(
    hosts: Hosts, alice: ApiToken
) -> None:
    old = upload(hosts.a, alice)  # recorded before any host registered: no host
    assert record(hosts.a, old.id).host_id is None
    assert register(hosts.a, this_host(hosts.a)) == []
    register(hosts.b, this_host(hosts.b))
    assert record(hosts.a, old.id).host_id == "a"
    preview_on(hosts.b, alice)
    views = {view.id: view for view in overview(hosts.a)}
    assert views["a"].state == views["b"].state == "live"
    assert views["b"].record.address == "198.51.100.2" and views["b"].running == 1 and views["a"].running == 0
    assert views["b"].record.cpus == 2 and views["b"].record.memory_bytes == 4 << 30
    as_json = views["b"].as_json()
    assert as_json["portRange"] == [41000, 41004] and as_json["lostAt"] is None


def test_a_host_shows_what_its_last_dispatch_round_found(hosts: Hosts) -> None:
    register(hosts.a, this_host(hosts.a))
    register(hosts.b, this_host(hosts.b))
    assert {view.id: view.admission for view in overview(hosts.a)} == {"a": None, "b": None}  # no round yet
    hosts.a.stores.hosts.report_room("a", None)
    hosts.a.stores.hosts.report_room("b", "waiting for resources: CPU 97% busy")
    views = {view.id: view.as_json() for view in overview(hosts.a)}
    assert views["a"]["admission"] == "room for a build"
    assert views["b"]["admission"] == "waiting for resources: CPU 97% busy"


def test_a_new_hosts_workers_starting_together_do_not_trip_over_its_row(
    hosts: Hosts, monkeypatch: pytest.MonkeyPatch
) -> None:
    info = this_host(hosts.a)
    found_none = host_state._update

    def another_worker_inserts_first(ctx: Context, host_id: str, said: dict) -> bool:
        if found_none(ctx, host_id, said):
            return True
        monkeypatch.setattr(host_state, "_update", found_none)  # what the other worker did, once
        with ctx.session() as session:
            session.add(Host(id=host_id, **{**said, "address": "inserted first"}))
        return False

    monkeypatch.setattr(host_state, "_update", another_worker_inserts_first)
    assert register(hosts.a, info) == []  # no IntegrityError: the row is updated instead
    with hosts.a.session() as session:
        row = session.get(Host, info.id)
        assert row is not None and row.address == info.address


def test_two_hosts_on_one_address_with_overlapping_ports_are_warned_about(hosts: Hosts) -> None:
    hosts.b.settings = hosts.b.settings.model_copy(update={"host_address": None})
    register(hosts.a, this_host(hosts.a))
    (warning,) = register(hosts.b, this_host(hosts.b))
    assert "host a publishes preview ports on 127.0.0.1 too" in warning


def test_ports_are_per_host(hosts: Hosts) -> None:
    assert hosts.a.port_pool().allocate("x@1") == 41000
    assert hosts.b.port_pool().allocate("y@1") == 41000  # the same number, on another host
    assert hosts.a.port_pool("b").store.owner(41000) == "y@1"


# -- another host's containers ------------------------------------------------------


def test_gc_of_one_host_leaves_the_other_hosts_previews(hosts: Hosts, alice: ApiToken) -> None:
    on_b = preview_on(hosts.b, alice)
    report = collect(hosts.a)
    assert record(hosts.a, on_b.id).status == Status.RUNNING
    assert not any(action.target == on_b.id for action in report.actions)
    assert hosts.b.stores.ports.owner(41000) == attempt_owner(on_b.id, 1)


def test_a_lost_hosts_previews_are_stopped_host_lost_and_its_builds_queued_again(
    hosts: Hosts, alice: ApiToken
) -> None:
    register(hosts.a, this_host(hosts.a))
    register(hosts.b, this_host(hosts.b))
    preview = preview_on(hosts.b, alice)
    building = upload(hosts.b, alice)
    with hosts.b.session() as session:  # taken by a worker of host b, which then went silent
        row = session.get(BuildJob, building.id)
        assert row is not None
        row.status, row.attempts, row.host_id = Status.BUILDING, 1, "b"
        session.add(row)
    hosts.a.stores.admission.withdraw(building.id)
    hosts.clock.now += HOST_TTL + 1
    hosts.a.stores.hosts.beat(this_host(hosts.a))  # a lives on
    assert stop_lost_hosts(hosts.a) == {"b": [preview.id]}
    stopped = record(hosts.a, preview.id)
    assert stopped.status == Status.STOPPED and stopped.stop_reason == "host-lost"
    assert hosts.b.stores.ports.owner(41000) is None
    assert recover_lost(hosts.a) == {building.id: "queued again"}
    assert hosts.a.stores.admission.waiting() == [building.id]
    jobs = MemoryJobs()
    assert dispatch_round(hosts.a, jobs, IDLE) == building.id
    assert jobs.hosts[building.id] == "a" and record(hosts.a, building.id).host_id == "a"
    views = {view.id: view for view in overview(hosts.a)}
    assert views["b"].state == "lost" and views["b"].lost_at is not None
    register(hosts.b, this_host(hosts.b))  # it comes back
    assert {view.id: view.state for view in overview(hosts.a)}["b"] == "live"


def test_a_host_not_reachable_any_more_cannot_be_driven(hosts: Hosts) -> None:
    del hosts.a.runtimes["b"]
    with pytest.raises(RuntimeUnavailable, match="host b has no live worker"):
        hosts.a.runtime_for("b")


# -- placement ----------------------------------------------------------------------


def rebuild_of_a_site_on_b(hosts: Hosts, alice: ApiToken, b_says: str | None) -> tuple[BuildJob, MemoryJobs]:
    """Both hosts live, a website live on b (which last said ``b_says`` of its room), and a new
    version of it admitted by a's worker."""
    for host in (hosts.a, hosts.b):
        register(host, this_host(host))
    previous = preview_on(hosts.b, alice)
    hosts.b.stores.hosts.report_room("b", b_says)
    again = upload(hosts.a, alice, website_id=previous.website_id)
    jobs = MemoryJobs(host="a")
    assert dispatch_round(hosts.a, jobs, IDLE) == again.id
    return record(hosts.a, again.id), jobs


def test_a_rebuild_goes_to_the_host_of_the_websites_previous_build_when_it_has_room(
    hosts: Hosts, alice: ApiToken
) -> None:
    placed, jobs = rebuild_of_a_site_on_b(hosts, alice, None)
    assert jobs.hosts[placed.id] == "b" == placed.host_id
    assert "previous build ran there" in (placed.placement or "")


def test_a_rebuild_runs_here_when_the_previous_host_is_short(hosts: Hosts, alice: ApiToken) -> None:
    placed, jobs = rebuild_of_a_site_on_b(hosts, alice, "waiting for resources: memory")
    assert jobs.hosts[placed.id] == "a" == placed.host_id
    assert "is short (waiting for resources: memory)" in (placed.placement or "")


def test_a_build_admitted_to_a_host_lost_before_it_started_waits_again(hosts: Hosts, alice: ApiToken) -> None:
    placed, jobs = rebuild_of_a_site_on_b(hosts, alice, None)  # on b's queue; b dies before taking it
    hosts.clock.now += HOST_TTL + 1
    hosts.a.stores.hosts.beat(this_host(hosts.a))
    assert reconcile(hosts.a, jobs) == [placed.id]
    assert hosts.a.stores.admission.waiting() == [placed.id]


def test_a_builds_heartbeat_keeps_its_host_live_however_long_the_build(hosts: Hosts) -> None:
    hosts.a.host_record = this_host(hosts.a)
    assert hosts.a.stores.hosts.get("a") is None
    with Heartbeat(hosts.a, "some-build", 1):
        assert hosts.a.stores.hosts.get("a") == hosts.a.host_record


def test_a_rebuild_runs_here_while_the_previous_hosts_workers_are_busy(hosts: Hosts, alice: ApiToken) -> None:
    one, jobs = rebuild_of_a_site_on_b(hosts, alice, None)
    assert jobs.pending() == 0 and jobs.pending("b") == 1 and one.host_id == "b"  # not taken yet
    second = preview_on(hosts.b, alice, port=41001)
    two = upload(hosts.a, alice, website_id=second.website_id)
    assert dispatch_round(hosts.a, jobs, IDLE) == two.id
    placed = record(hosts.a, two.id)
    assert placed.host_id == "a" and "its workers have a build still to start" in (placed.placement or "")


def test_another_hosts_engine_is_reached_with_the_tls_dockers_client_uses(tmp_path) -> None:
    from docker.tls import TLSConfig

    from orchestrator.adapters.docker_engine import engine_options

    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("not read before a connection")
    tls_env = {
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(tmp_path),
        "DOCKER_HOST": "unix:///elsewhere",
    }
    remote = engine_options("tcp://host-b.example.com:2376", tls_env)
    assert remote["base_url"] == "tcp://host-b.example.com:2376"
    assert isinstance(remote["tls"], TLSConfig) and remote["tls"].ca_cert == str(tmp_path / "ca.pem")
    assert engine_options("tcp://host-b.example.com:2375", {}) == {
        "base_url": "tcp://host-b.example.com:2375"
    }
    assert engine_options("unix:///var/run/docker.sock", tls_env) == {
        "base_url": "unix:///var/run/docker.sock"
    }


def test_metrics_read_each_hosts_preview_memory_from_its_own_engine(hosts: Hosts, alice: ApiToken) -> None:
    from orchestrator.service.metrics import ServiceCollector

    def memory_by_host() -> dict[str, float]:
        (family,) = [
            m for m in ServiceCollector(hosts.a).collect() if m.name == "orchestrator_previews_memory_bytes"
        ]
        return {sample.labels["host"]: sample.value for sample in family.samples}

    register(hosts.a, this_host(hosts.a))
    register(hosts.b, this_host(hosts.b))
    preview_on(hosts.a, alice)
    preview_on(hosts.b, alice)
    preview_on(hosts.b, alice, port=41001)
    assert memory_by_host() == {"a": 50 * 2**20, "b": 100 * 2**20}  # the memory engine: 50 MB each
    hosts.clock.now += HOST_TTL + 1  # b's worker stopped beating: its engine is not asked
    hosts.a.stores.hosts.beat(this_host(hosts.a))
    assert memory_by_host() == {"a": 50 * 2**20}
