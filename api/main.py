"""The FastAPI application: `uvicorn api.main:app`, or `orchestrator api`."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

from api import errors
from api.limits import BodyLimit
from api.routes import builds, edits, health, hosts, metrics, previews, shares, websites
from orchestrator import __version__
from orchestrator.config import Settings
from orchestrator.context import Context


def create_app(ctx: Context | None = None) -> FastAPI:
    """The application over ``ctx`` (made from the environment at start-up when None)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = ctx is None
        app.state.ctx = ctx or Context.connect(Settings())
        try:
            yield
        finally:
            if own:
                app.state.ctx.close()

    app = FastAPI(title="Website build orchestrator", version=__version__, lifespan=lifespan)
    if ctx is not None:
        app.state.ctx = ctx  # usable without the lifespan too (TestClient outside a with block)
    errors.install(app)
    app.add_middleware(BodyLimit)
    app.include_router(health.router)
    app.include_router(websites.router)
    app.include_router(builds.router)
    app.include_router(previews.router)
    app.include_router(hosts.router)
    app.include_router(shares.router)
    app.include_router(edits.router)
    app.include_router(metrics.router)
    # The web page: plain HTML and JavaScript modules, no build step. Mounted last so that
    # /api and /docs keep their routes.
    app.mount("/", WebPage(directory=Path(__file__).parent / "static", html=True), name="web")
    return app


class WebPage(StaticFiles):
    """The web page's files, sent with a Content-Security-Policy: the page loads its own files
    only, frames nothing but the previews, and is framed by nobody."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        settings: Settings = scope["app"].state.ctx.settings
        previews = f"http://{settings.public_host}:* http://*.{settings.preview_domain}:*"
        response.headers["Content-Security-Policy"] = (
            f"default-src 'self'; frame-src {previews}; img-src 'self' data:; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
        )
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response


app = create_app()
