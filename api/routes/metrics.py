from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry
from starlette.concurrency import run_in_threadpool

from api.deps import ContextDep, PrincipalDep
from orchestrator.core.exceptions import Forbidden
from orchestrator.service.auth import is_admin
from orchestrator.service.metrics import ServiceCollector

router = APIRouter(tags=["metrics"])


@router.get("/metrics")
async def metrics(ctx: ContextDep, principal: PrincipalDep) -> Response:
    """Prometheus metrics (an admin token: Prometheus sends it with `authorization`)."""
    if not is_admin(principal):
        raise Forbidden("metrics are for admins")
    registry = CollectorRegistry()
    registry.register(ServiceCollector(ctx))
    body = await run_in_threadpool(generate_latest, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
