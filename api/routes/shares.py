"""Who may open a website's previews through the gateway: its access setting and share links."""

from datetime import datetime

from fastapi import APIRouter

from api.deps import ContextDep, PrincipalDep, SessionDep
from api.schemas import CamelModel
from orchestrator.service.shares import access_of, create_share, revoke_share, set_access

router = APIRouter(prefix="/api/websites", tags=["previews"])


class AccessChange(CamelModel):
    preview_access: str
    """"open": anyone who reaches the gateway; "protected": a share link or the owner's token."""


class AccessPublic(CamelModel):
    id: str
    preview_access: str


class ShareRequest(CamelModel):
    expires_in: int | None = None
    """Seconds the link opens the previews for (none: until revoked)."""


class SharePublic(CamelModel):
    id: str
    url: str
    expires_at: datetime | None


class ShareRevoked(CamelModel):
    id: str
    revoked_at: datetime | None


@router.patch("/{website_id}", response_model=AccessPublic, response_model_by_alias=True)
def change_access(
    website_id: str, change: AccessChange, ctx: ContextDep, session: SessionDep, principal: PrincipalDep
) -> AccessPublic:
    """Open the website's previews to anyone who reaches the gateway, or protect them."""
    website = set_access(session, principal, website_id, change.preview_access)
    return AccessPublic(id=website.id, preview_access=access_of(ctx.settings, website).value)


@router.post("/{website_id}/share", status_code=201, response_model=SharePublic, response_model_by_alias=True)
def share(
    website_id: str,
    ctx: ContextDep,
    session: SessionDep,
    principal: PrincipalDep,
    request: ShareRequest | None = None,
) -> SharePublic:
    """A signed link that opens the website's previews (its stable URL) without an API token."""
    shared = create_share(ctx, session, principal, website_id, request.expires_in if request else None)
    return SharePublic(id=shared.link.id, url=shared.url, expires_at=shared.link.expires_at)


@router.delete("/{website_id}/share/{share_id}", response_model=ShareRevoked, response_model_by_alias=True)
def revoke(website_id: str, share_id: str, session: SessionDep, principal: PrincipalDep) -> ShareRevoked:
    """Revoke a share link: within seconds it opens nothing, and says so."""
    link = revoke_share(session, principal, website_id, share_id)
    return ShareRevoked(id=link.id, revoked_at=link.revoked_at)
