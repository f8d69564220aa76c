from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import ContextDep
from orchestrator.service.health import check_health

router = APIRouter(tags=["health"])


@router.get("/api/health")
async def health(ctx: ContextDep) -> JSONResponse:
    """Answers without a token: 200 when builds can run (the database, Redis, the Docker engine
    with the build image, and at least one live worker), else 503 naming what is down."""
    found = await run_in_threadpool(check_health, ctx)
    return JSONResponse(found.as_dict(), status_code=200 if found.ok else 503)
