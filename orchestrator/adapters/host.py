"""This host as the scheduler sees it: memory and CPU use, and whether a port is free."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import psutil


def host_usage() -> tuple[float, float]:
    """Host memory use (%) and CPU use (%) since the previous call in this process."""
    return psutil.virtual_memory().percent, psutil.cpu_percent(interval=None)


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
