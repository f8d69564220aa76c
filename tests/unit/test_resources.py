from orchestrator.config import Settings
from orchestrator.core.resources import Snapshot, memory_limit_mb, shortage

SETTINGS = Settings(build_memory_budget_mb=4096, max_memory_percent=90, max_cpu_percent=80)


def snap(memory=40.0, cpu=10.0, previews=0.0, building=0):
    return Snapshot(memory, cpu, previews, building)


def test_room_means_no_wait():
    assert shortage(snap(), SETTINGS) is None


def test_each_shortage_says_what_is_short():
    assert shortage(snap(memory=91.2), SETTINGS) == "waiting for resources: memory 91% used"
    assert shortage(snap(cpu=97), SETTINGS) == "waiting for resources: CPU 97% busy"
    reason = shortage(snap(previews=1000, building=6), SETTINGS)
    assert reason == (
        "waiting for resources: 4072 MB of the 4096 MB build memory budget in use, a build needs 512 MB"
    )


def test_previews_count_by_what_they_use_not_by_their_cap():
    # 20 idle previews at 150 MB each fit where 20 caps of 512 MB would not
    assert shortage(snap(previews=20 * 150), SETTINGS) is None
    assert shortage(snap(previews=20 * 150, building=2), SETTINGS) is not None


def test_memory_limit_parsing():
    assert memory_limit_mb(Settings(memory_limit="512m")) == 512
    assert memory_limit_mb(Settings(memory_limit="1g")) == 1024


def container(id_: str, build: str, state: str = "running") -> dict:
    return {"Id": id_, "State": state, "Labels": {"org.website-orchestrator.build-id": build}}


def test_a_build_beside_its_type_check_counts_twice() -> None:
    from orchestrator.core.resources import split_containers

    listed = [
        container("b1", "one"),
        container("c1", "one"),  # its type check
        container("b2", "two"),
        container("p1", "live"),
        container("p2", "stopped", state="exited"),
    ]
    previews, building = split_containers(listed, {"one", "two", "three"})  # three: no container yet
    assert previews == ["p1"]
    assert building == 2 + 1 + 1


def test_no_free_preview_port_makes_builds_wait():
    ports = Settings(port_range_start=41000, port_range_end=41009, npm_registry="http://127.0.0.1:4873/")
    reason = shortage(Snapshot(10, 10, 0, 0, free_ports=0), ports)
    assert reason == "waiting for a free preview port (all 10 ports of 41000-41009 in use)"
    assert shortage(Snapshot(10, 10, 0, 0, free_ports=1), ports) is None


def test_a_full_disk_makes_builds_wait():
    reason = shortage(Snapshot(10, 10, 0, 0, free_disk=("/var/lib/docker", 512.4)), SETTINGS)
    assert reason == "waiting for disk space: 512 MB free on /var/lib/docker, 2048 MB are kept free"
    assert shortage(Snapshot(10, 10, 0, 0, free_disk=("/data", 4096.0)), SETTINGS) is None


def test_builds_in_progress_count_for_the_ports_they_will_take():
    from orchestrator.core.resources import free_ports

    ports = Settings(port_range_start=41000, port_range_end=41009, npm_registry="http://127.0.0.1:4873/")
    assert free_ports(ports, held=7, active_without_port=2) == 1
    assert free_ports(ports, held=8, active_without_port=2) == 0
