"""A second Docker host on this machine, for the many-host tests: a network namespace of the
test's own with a veth pair (addresses the test gives it), a second dockerd inside it with its
own data root, exec root, socket and bridge, the build image copied in (``docker save`` /
``load``, its id checked), and a way to the one PostgreSQL (a socat unix socket, as a second
machine would have its own route to the database).

Traffic: the gateway and the API reach the namespace's address only; the namespace's own
builds go out through it to the package registry, as the first host's do.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import IO

NETNS = "wob-host-b"
OUTER, INNER = "wob-hb-out", "wob-hb-in"
SUBNET = "10.231.0"
ADDRESS = f"{SUBNET}.2"
"""The second host's address, as the first host (the gateway, the API) reaches it."""
RUN = Path("/run/wob-host-b")
DATA = Path("/var/lib/wob-host-b")
ENGINE = f"unix://{RUN}/docker.sock"
PG_SOCKET_DIR = RUN / "pg"
CGROUP = "/wob-host-b"
"""Where the second engine's containers are in the cgroup tree (each has a network namespace
of its own: ``ip netns pids`` does not list them)."""
IN_NETNS = ("nsenter", f"--net=/run/netns/{NETNS}")
"""Run a command in the namespace (nsenter, not ``ip netns exec``: that mounts a sysfs of its
own, which hides the cgroup mounts dockerd needs)."""
_FORWARD = (
    ("-t", "nat", "POSTROUTING", "-s", f"{SUBNET}.0/24", "!", "-o", OUTER, "-j", "MASQUERADE"),
    ("FORWARD", "-i", OUTER, "-j", "ACCEPT"),
    ("FORWARD", "-o", OUTER, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"),
)


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=120)


def _rule(action: str, rule: tuple[str, ...]) -> list[str]:
    table = list(rule[:2]) if rule[0] == "-t" else []
    chain, *spec = rule[2:] if table else rule
    return ["iptables", *table, action, chain, *spec]


def _in_cgroup(parent: str) -> set[str]:
    """The processes whose cgroup (any hierarchy) is under ``parent``."""
    found = set()
    for path in Path("/proc").glob("[0-9]*/cgroup"):
        with contextlib.suppress(OSError):
            if f":{parent}/" in path.read_text():
                found.add(path.parent.name)
    return found


class SecondHost:
    """Made with ``with SecondHost(log) as host:``; ``kill()`` takes the whole host away."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._socat: subprocess.Popen[bytes] | None = None
        self._log: IO[str] | None = None
        self._dockerd: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SecondHost:
        self.tear_down()  # what an earlier run left
        try:
            self._network()
            self._engine()
            self._database_route()
        except BaseException:
            self.tear_down()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.tear_down()

    def _network(self) -> None:
        _run("ip", "netns", "add", NETNS)
        _run("ip", "link", "add", OUTER, "type", "veth", "peer", "name", INNER)
        _run("ip", "link", "set", INNER, "netns", NETNS)
        _run("ip", "addr", "add", f"{SUBNET}.1/24", "dev", OUTER)
        _run("ip", "link", "set", OUTER, "up")
        _run(*IN_NETNS, "ip", "addr", "add", f"{ADDRESS}/24", "dev", INNER)
        _run(*IN_NETNS, "ip", "link", "set", INNER, "up")
        _run(*IN_NETNS, "ip", "link", "set", "lo", "up")
        _run(*IN_NETNS, "ip", "route", "add", "default", "via", f"{SUBNET}.1")
        for rule in _FORWARD:
            _run(*_rule("-I", rule))

    def _engine(self) -> None:
        for folder in (RUN, DATA):
            folder.mkdir(parents=True, exist_ok=True)
        log = self._log = (self.log_dir / "second-host-dockerd.log").open("w")
        self._dockerd = subprocess.Popen(
            [
                *IN_NETNS,
                "dockerd",
                "--data-root", str(DATA),
                "--exec-root", str(RUN / "exec"),
                "--pidfile", str(RUN / "docker.pid"),
                "-H", ENGINE,
                "--bridge", "docker0",
                "--cgroup-parent", CGROUP,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not (RUN / "docker.sock").exists():
            if time.monotonic() > deadline:
                raise AssertionError(f"the second dockerd did not start: see {log.name}")
            time.sleep(0.2)
        while _run("docker", "-H", ENGINE, "version", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"the second dockerd does not answer: see {log.name}")
            time.sleep(0.2)

    def copy_image(self, image: str) -> str:
        """The build image, saved from the first engine and loaded into this one; its id, checked
        to be the same on both (the one way an image crosses hosts here)."""
        mine = _run("docker", "image", "inspect", "-f", "{{.Id}}", image).stdout.strip()
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        load = subprocess.run(
            ["docker", "-H", ENGINE, "load"], stdin=save.stdout, capture_output=True, timeout=300
        )
        save.wait(timeout=60)
        assert save.stdout is not None
        save.stdout.close()
        assert save.returncode == 0 and load.returncode == 0, load.stderr
        theirs = _run("docker", "-H", ENGINE, "image", "inspect", "-f", "{{.Id}}", image).stdout.strip()
        assert theirs == mine, f"{image} is {theirs} on the second host, {mine} here"
        return theirs

    def _database_route(self) -> None:
        PG_SOCKET_DIR.mkdir(parents=True, exist_ok=True)
        self._socat = subprocess.Popen(
            ["socat", f"UNIX-LISTEN:{PG_SOCKET_DIR}/.s.PGSQL.5432,fork,mode=600", "TCP:127.0.0.1:5432"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not (PG_SOCKET_DIR / ".s.PGSQL.5432").exists():
            assert time.monotonic() < deadline, "socat did not make the PostgreSQL socket"
            time.sleep(0.05)

    @staticmethod
    def database_url(url: str) -> str:
        """``url`` (a TCP URL to 127.0.0.1:5432) as the second host reaches it: the socket."""
        assert "@127.0.0.1:5432/" in url, url
        return url.replace("@127.0.0.1:5432/", "@/") + f"?host={PG_SOCKET_DIR}"

    def kill(self) -> None:
        """The host goes away at once: every process in its namespace (its workers, its engine)
        and in its containers' cgroups killed."""
        for _ in range(3):
            pids = set(_run("ip", "netns", "pids", NETNS, check=False).stdout.split()) | _in_cgroup(CGROUP)
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            time.sleep(0.5)

    def tear_down(self) -> None:
        self.kill()
        if self._dockerd is not None:
            self._dockerd.kill()  # (killed with its namespace already: this reaps it)
            self._dockerd.wait()
            self._dockerd = None
        if self._socat is not None:
            self._socat.kill()
            self._socat.wait()
            self._socat = None
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for mount in reversed(mounts):
            if mount.startswith((str(DATA), str(RUN))):
                _run("umount", "-l", mount, check=False)
        _run("ip", "netns", "del", NETNS, check=False)
        _run("ip", "link", "del", OUTER, check=False)
        for rule in _FORWARD:
            while _run(*_rule("-D", rule), check=False).returncode == 0:
                pass
        for folder in (RUN, DATA):
            shutil.rmtree(folder, ignore_errors=True)
        if self._log is not None:
            self._log.close()
            self._log = None
