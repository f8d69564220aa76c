"""Starts a build's steps in its containers and turns what Docker reports about them into
events (orchestrator.core.steps) on one queue, for the worker's loop to judge.

Three kinds of step process, all started by the worker:

- ``exec``: a command run with ``docker exec`` in a running container (the project's install
  scripts); its output is read from the exec, its exit code from Docker's exec record;
- ``service``: the development server, a detached ``docker exec`` of the image's
  ``orchestrator-serve``, whose output goes to the container's log (kept after the worker
  stops following it) and which ends the container when it exits;
- ``container``: a container whose own process is the step (the type check, beside the preview,
  with a memory limit of its own); its exit code and OOM flag from ``docker wait``/inspect.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

from orchestrator.adapters.runtime import Runtime
from orchestrator.core.exceptions import OrchestratorError, RuntimeUnavailable
from orchestrator.core.steps import Exited, Line

SERVE_WRAPPER = "orchestrator-serve"
"""The image's script that runs the server as the container's service (images/node/)."""


class Fault:
    """A step could not be watched: Docker failed (the engine went away, say)."""

    def __init__(self, step: str, error: OrchestratorError) -> None:
        self.step, self.error = step, error


Event = Line | Exited | Fault


class StepRunner:
    def __init__(self, runtime: Runtime, build_id: str) -> None:
        self.runtime = runtime
        self.build_id = build_id
        self.events: queue.Queue[Event] = queue.Queue()

    def next(self, timeout: float) -> Event | None:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            return None

    def exec(self, step: str, container_id: str, command: str) -> None:
        exec_id, lines = self.runtime.exec_start(container_id, ["sh", "-c", command])
        self._watch(step, lambda: lines, lambda: self._exec_exit(step, exec_id, container_id))

    def service(self, step: str, container_id: str, command: str) -> None:
        exec_id, _ = self.runtime.exec_start(
            container_id, [SERVE_WRAPPER, "sh", "-c", f"exec {command}"], detach=True
        )
        self._watch(
            step,
            lambda: self.runtime.log_lines(container_id),
            lambda: self._exec_exit(step, exec_id, container_id),
        )

    def container(self, step: str, container_id: str) -> None:
        def exit_state() -> Exited:
            state = self.runtime.wait(container_id, timeout=30)
            if state is None:
                return Exited(step, None)
            return Exited(step, state.exit_code, state.oom_killed)

        self._watch(step, lambda: self.runtime.log_lines(container_id), exit_state)

    def _exec_exit(self, step: str, exec_id: str, container_id: str) -> Exited:
        code = None
        for _ in range(50):  # the exec's record says Running for a moment after its output ends
            code = self.runtime.exec_exit_code(exec_id)
            if code is not None:
                break
            time.sleep(0.1)
        state = self.runtime.state(container_id)
        return Exited(step, code, bool(state and state.oom_killed))

    def _watch(self, step: str, lines: Callable[[], Iterator[str]], ended: Callable[[], Exited]) -> None:
        def pump() -> None:
            try:
                for line in lines():
                    self.events.put(Line(step, line))
                self.events.put(ended())
            except OrchestratorError as exc:
                self.events.put(Fault(step, exc))
            except Exception as exc:  # noqa: BLE001 - never a silent end: the build would wait for nothing
                self.events.put(Fault(step, RuntimeUnavailable(f"watching the step failed: {exc!r}")))

        threading.Thread(target=pump, name=f"{step}-{self.build_id[:8]}", daemon=True).start()
