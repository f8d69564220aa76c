from fastapi import APIRouter

from api.deps import ContextDep, PrincipalDep
from api.schemas import HostPublic
from orchestrator.core.exceptions import Forbidden
from orchestrator.service.auth import is_admin
from orchestrator.state.hosts import overview

router = APIRouter(prefix="/api/hosts", tags=["hosts"])


@router.get("", response_model=list[HostPublic], response_model_by_alias=True)
def hosts(ctx: ContextDep, principal: PrincipalDep) -> list[HostPublic]:
    """The hosts builds run on, live ones first: each one's address, capacity, preview ports,
    and its running, sleeping and building builds (admins only)."""
    if not is_admin(principal):
        raise Forbidden("the hosts are for admins")
    return [HostPublic.model_validate(view.as_json()) for view in overview(ctx)]
