"""Request bodies bounded while they arrive (pure ASGI, in front of every route).

A body whose declared length is over the limit is answered 413 before a byte of it is read; a
body sent without a length (chunked) ends the request with 413 the moment it grows past the
limit. The upload route checks the caller's token before it reads the body at all
(api/routes/websites.py), so an anonymous client cannot make the API spool anything.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.core.exceptions import UploadTooLarge

FORM_OVERHEAD = 1024 * 1024
"""What a multipart body may add to the upload itself (boundaries, headers, the form's fields)."""


def body_limit(scope: Scope) -> int:
    return int(scope["app"].state.ctx.settings.max_upload_bytes) + FORM_OVERHEAD


def too_large(limit: int) -> UploadTooLarge:
    return UploadTooLarge(
        f"the request body is larger than {limit // 2**20} MB: an upload may be at most "
        f"{(limit - FORM_OVERHEAD) // 2**20} MB (leave out node_modules, dist and .git)"
    )


class BodyLimit:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit = body_limit(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            exc = too_large(limit)
            response = JSONResponse({"detail": exc.message, "error": type(exc).__name__}, status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:  # raised inside the route's reading: answered 413 (api/errors.py)
                    raise too_large(limit)
            return message

        await self.app(scope, limited, send)
