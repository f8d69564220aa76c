from fastapi import APIRouter

from api.deps import ContextDep, PrincipalDep, SessionDep
from api.schemas import PreviewPublic
from orchestrator.service.previews import live_previews

router = APIRouter(prefix="/api/previews", tags=["previews"])


@router.get("", response_model=list[PreviewPublic], response_model_by_alias=True)
def previews(ctx: ContextDep, session: SessionDep, principal: PrincipalDep) -> list[PreviewPublic]:
    """Live previews (the caller's; an admin's: all), newest first, with what each costs (memory)
    and how long since anyone used it (idle) and since it went live (age)."""
    return [
        PreviewPublic.model_validate(p, from_attributes=True) for p in live_previews(ctx, session, principal)
    ]
