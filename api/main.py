"""The FastAPI application: `uvicorn api.main:app`, or `orchestrator api`."""

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api import errors
from api.routes import builds, health, previews, websites
from orchestrator import __version__


def create_app() -> FastAPI:
    app = FastAPI(title="Website build orchestrator", version=__version__)
    errors.install(app)
    app.include_router(health.router)
    app.include_router(websites.router)
    app.include_router(builds.router)
    app.include_router(previews.router)
    # The web page: plain HTML and JavaScript modules, no build step. Mounted last so that
    # /api and /docs keep their routes.
    app.mount("/", StaticFiles(directory=Path(__file__).parent / "static", html=True), name="web")
    return app


app = create_app()
