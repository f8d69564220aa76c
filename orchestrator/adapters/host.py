"""This host as the scheduler sees it: memory and CPU use, and whether a port is free."""

from __future__ import annotations

import socket

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
