from fastapi import APIRouter

from api.deps import PrincipalDep, SessionDep
from api.schemas import BuildPublic
from orchestrator.websites import get_build

router = APIRouter(prefix="/api/builds", tags=["builds"])


@router.get("/{job_id}", response_model=BuildPublic, response_model_by_alias=True)
def build(job_id: str, session: SessionDep, principal: PrincipalDep) -> BuildPublic:
    """The whole job record, logs included (the newest lines kept)."""
    return BuildPublic.model_validate(get_build(session, principal, job_id))
