"""The one place where the orchestrator's errors become HTTP status codes."""

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from orchestrator.core.exceptions import (
    Conflict,
    Forbidden,
    InvalidTransition,
    InvalidUpload,
    NotFound,
    OrchestratorError,
    QuotaExceeded,
    ServiceUnavailable,
    Unauthorized,
    UploadTooLarge,
)

STATUS_CODES: list[tuple[type[OrchestratorError], int]] = [
    (UploadTooLarge, 413),
    (QuotaExceeded, 429),
    (InvalidUpload, 400),
    (NotFound, 404),
    (Unauthorized, 401),
    (Forbidden, 403),
    (InvalidTransition, 409),
    (Conflict, 409),
    (ServiceUnavailable, 503),
]


def status_code_for(exc: OrchestratorError) -> int:
    for cls, code in STATUS_CODES:
        if isinstance(exc, cls):
            return code
    return 500


async def _handle(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OrchestratorError)
    code = status_code_for(exc)
    headers = {"WWW-Authenticate": "Bearer"} if code == 401 else None
    if isinstance(exc, QuotaExceeded):
        headers = {"Retry-After": str(exc.retry_after)}
    return JSONResponse(
        {"detail": exc.message, "error": type(exc).__name__}, status_code=code, headers=headers
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(OrchestratorError, _handle)
