"""`orchestrator up` starts again a worker that ended, with a back-off while it keeps ending."""

from __future__ import annotations

from orchestrator.cli.supervisor import Supervisor


class FakeProcess:
    """A process as the supervisor sees it: running until told it exited."""

    def __init__(self) -> None:
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def supervised(count: int = 2) -> tuple[Supervisor, list[FakeProcess], Clock]:
    made: list[FakeProcess] = []
    clock = Clock()

    def spawn() -> FakeProcess:
        made.append(FakeProcess())
        return made[-1]

    supervisor = Supervisor(spawn, count, clock)
    supervisor.start()
    return supervisor, made, clock


def test_running_processes_are_left_alone() -> None:
    supervisor, made, clock = supervised()
    clock.now = 100
    supervisor.check()
    assert len(made) == 2 and supervisor.restarts == 0


def test_a_process_that_ran_a_while_is_started_again_at_once() -> None:
    supervisor, made, clock = supervised()
    clock.now = 120
    made[0].returncode = 1
    supervisor.check()
    assert len(made) == 3 and supervisor.processes()[0] is made[2]


def test_a_process_that_keeps_dying_waits_longer_each_time() -> None:
    supervisor, made, clock = supervised(count=1)
    delays = []
    for _ in range(4):
        made[-1].returncode = 1
        supervisor.check()  # noticed: waits
        slot = supervisor.slots[0]
        assert slot.restart_at is not None
        delays.append(slot.restart_at - clock.now)
        clock.now = slot.restart_at
        supervisor.check()  # started again
    assert delays == [1.0, 2.0, 4.0, 8.0] and supervisor.restarts == 4


def test_the_back_off_is_capped() -> None:
    supervisor, made, clock = supervised(count=1)
    for _ in range(10):
        made[-1].returncode = 1
        supervisor.check()
        clock.now = supervisor.slots[0].restart_at or clock.now
        supervisor.check()
    made[-1].returncode = 1
    supervisor.check()
    assert supervisor.slots[0].restart_at == clock.now + 30
