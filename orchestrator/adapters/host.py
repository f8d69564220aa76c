"""This host as the scheduler sees it: memory and CPU use, and whether a port is free."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import psutil

from orchestrator.core.ports import with_reserved

EPHEMERAL_PORTS = Path("/proc/sys/net/ipv4/ip_local_port_range")
RESERVED_PORTS = Path("/proc/sys/net/ipv4/ip_local_reserved_ports")


def host_usage() -> tuple[float, float]:
    """Host memory use (%) and CPU use (%) since the previous call in this process."""
    return memory_percent(), psutil.cpu_percent(interval=None)


def memory_percent() -> float:
    """Host memory use (%)."""
    return float(psutil.virtual_memory().percent)


def port_is_bindable(port: int, host: str = "0.0.0.0") -> bool:
    """True when no process on this host listens on ``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def disk_free(paths: list[Path]) -> tuple[str, float] | None:
    """The fullest of ``paths`` that exist on this host, and the MB free there."""
    found = []
    for path in paths:
        try:
            found.append((str(path), shutil.disk_usage(path).free / 2**20))
        except OSError:
            continue  # not on this host (a remote engine's folder), or not made yet
    return min(found, key=lambda item: item[1]) if found else None


def reserve_ports(start: int, end: int) -> str:
    """Keep the kernel from handing the previews' ports to outgoing connections.

    A sleeping preview keeps its port while nothing listens on it; a port inside the kernel's
    ephemeral range can then become the source port of any outgoing connection on this host,
    and the preview's container could not start again ("address already in use"). The range is
    added to net.ipv4.ip_local_reserved_ports (kept with the ranges already there). What was
    done, or what the operator must do, in one sentence."""
    wanted = f"net.ipv4.ip_local_reserved_ports={start}-{end}"
    try:
        low, high = (int(n) for n in EPHEMERAL_PORTS.read_text().split())
        current = RESERVED_PORTS.read_text()
    except (OSError, ValueError) as exc:
        return f"cannot read this host's port ranges ({exc}); set {wanted} yourself"
    if end < low or start > high:
        return f"{start}-{end} lies outside the kernel's ephemeral ports ({low}-{high})"
    merged = with_reserved(current, start, end)
    if merged is None:
        return f"{start}-{end} already reserved from the kernel's ephemeral ports"
    try:
        RESERVED_PORTS.write_text(merged)
    except OSError as exc:
        return f"could not reserve {start}-{end} from the kernel's ephemeral ports ({exc}): set {wanted}"
    return f"{start}-{end} reserved from the kernel's ephemeral ports ({low}-{high})"
