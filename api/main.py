"""The FastAPI application: `uvicorn api.main:app`, or `orchestrator api`."""

from fastapi import FastAPI

from api import errors
from api.routes import builds, health, websites
from orchestrator import __version__


def create_app() -> FastAPI:
    app = FastAPI(title="Website build orchestrator", version=__version__)
    errors.install(app)
    app.include_router(health.router)
    app.include_router(websites.router)
    app.include_router(builds.router)
    return app


app = create_app()
