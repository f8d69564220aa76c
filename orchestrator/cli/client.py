"""A small client of the orchestrator's HTTP API, for the CLI's submit, status and logs."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import connect_sse

from orchestrator.core import defaults
from orchestrator.core.exceptions import OrchestratorError


class ClientError(OrchestratorError):
    """Raised when the API refuses a request or cannot be reached; the message says why."""


def pack(path: Path) -> tuple[str, bytes]:
    """A zip to upload: the file itself when it is one, else the folder without the folders a
    build makes itself (node_modules, .git)."""
    if path.is_file():
        if path.suffix.lower() != ".zip":
            raise ClientError(f"{path} is not a folder or a .zip file")
        return path.name, path.read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for relative, file in folder_files(path).items():
            archive.write(file, relative)
    return f"{path.resolve().name or 'site'}.zip", buffer.getvalue()


def folder_files(path: Path) -> dict[str, Path]:
    """A project folder's files by relative path, without the folders a build makes itself
    (node_modules, .git)."""
    if not path.is_dir():
        raise ClientError(f"{path} does not exist or is not a folder")
    found = {}
    for file in sorted(path.rglob("*")):
        relative = file.relative_to(path)
        if file.is_file() and not set(relative.parts) & defaults.IGNORED_DIRS:
            found[relative.as_posix()] = file
    return found


class ApiClient:
    def __init__(self, server: str, token: str | None) -> None:
        if not token:
            raise ClientError("no token: pass --token or set ORCHESTRATOR_TOKEN")
        self.http = httpx.Client(
            base_url=server.rstrip("/"), timeout=60, headers={"Authorization": f"Bearer {token}"}
        )

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ClientError(f"cannot reach {self.http.base_url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text
            raise ClientError(f"{response.status_code}: {detail}")
        return response.json()

    def upload(self, filename: str, payload: bytes, name: str | None) -> dict[str, Any]:
        return self.request(
            "POST",
            "/api/websites",
            files={"files": (filename, payload)},
            data={"name": name} if name else None,
        )

    def status(self, job_id: str) -> dict[str, Any]:
        return self.request("GET", f"/api/builds/{job_id}/status")

    def events(self, job_id: str, retries: int = 10) -> Iterator[tuple[str, dict[str, Any]]]:
        """The build's events until its stream ends; reconnects where it left off."""
        last_id: str | None = None
        for attempt in range(retries + 1):
            try:
                headers = {"Last-Event-ID": last_id} if last_id else {}
                with connect_sse(
                    self.http,
                    "GET",
                    f"/api/builds/{job_id}/events",
                    headers=headers,
                    timeout=httpx.Timeout(60, read=None),
                ) as source:
                    if source.response.status_code >= 400:
                        source.response.read()
                        raise ClientError(f"{source.response.status_code}: {source.response.text}")
                    for sse in source.iter_sse():
                        last_id = sse.id or last_id
                        if sse.data and sse.event in ("status", "progress", "log"):  # not keep-alives
                            yield sse.event, json.loads(sse.data)
                return
            except httpx.HTTPError:
                if attempt == retries:
                    raise
                time.sleep(min(5, 1 + attempt))
