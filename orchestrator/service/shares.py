"""Share links and who may open a website's previews through the gateway.

A website's previews are ``open`` (anyone who reaches the gateway) or ``protected``: a share
link (orchestrator.core.sharing) or an API token of the owner or an admin opens them. The
default is Settings.default_preview_access: open while the gateway listens on loopback only.
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from sqlmodel import Session

from orchestrator.config import Settings
from orchestrator.context import Context
from orchestrator.core import sharing
from orchestrator.core.exceptions import InvalidUpload, NotFound
from orchestrator.core.gateway import SHARE_PARAMETER
from orchestrator.service.lookups import get_website
from orchestrator.state.models import ApiToken, ShareLink, Website, as_utc, utcnow

MAX_EXPIRES_IN = 365 * 24 * 3600


class Access(StrEnum):
    OPEN = "open"
    PROTECTED = "protected"


def access_of(settings: Settings, website: Website) -> Access:
    return Access(website.preview_access or settings.default_preview_access)


def set_access(session: Session, principal: ApiToken, website_id: str, value: str) -> Website:
    try:
        access = Access(value)
    except ValueError:
        raise InvalidUpload(f"previewAccess must be 'open' or 'protected', not {value[:20]!r}") from None
    website = get_website(session, principal, website_id)
    website.preview_access = access.value
    session.add(website)
    session.commit()
    return website


def secret(settings: Settings) -> bytes:
    """The key share links are signed with: the setting, else one made once in the data folder."""
    if settings.share_secret:
        return settings.share_secret.encode()
    path = Path(settings.data_dir) / "share-secret"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    made = secrets.token_urlsafe(32).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return path.read_bytes()
    with os.fdopen(fd, "wb") as out:
        out.write(made)
    return made


@dataclass(frozen=True)
class Shared:
    link: ShareLink
    url: str


def share_url(settings: Settings, website_id: str, link: ShareLink) -> str:
    expires = int(as_utc(link.expires_at).timestamp()) if link.expires_at else 0
    token = sharing.sign(secret(settings), website_id, link.id, expires)
    return f"{settings.website_url(website_id)}?{SHARE_PARAMETER}={token}"


def create_share(
    ctx: Context, session: Session, principal: ApiToken, website_id: str, expires_in: int | None
) -> Shared:
    website = get_website(session, principal, website_id)
    if expires_in is not None and not 1 <= expires_in <= MAX_EXPIRES_IN:
        raise InvalidUpload(f"expiresIn must be between 1 and {MAX_EXPIRES_IN} seconds, not {expires_in}")
    expires_at = None
    if expires_in is not None:  # whole seconds: what the token carries
        expires_at = datetime.fromtimestamp(int(time.time()) + expires_in, tz=utcnow().tzinfo)
    link = ShareLink(website_id=website.id, created_by=principal.id or 0, expires_at=expires_at)
    session.add(link)
    session.commit()
    session.refresh(link)
    return Shared(link, share_url(ctx.settings, website.id, link))


def revoke_share(session: Session, principal: ApiToken, website_id: str, share_id: str) -> ShareLink:
    website = get_website(session, principal, website_id)
    link = session.get(ShareLink, share_id)
    if link is None or link.website_id != website.id:
        raise NotFound(f"no share link {share_id} for website {website_id}")
    if link.revoked_at is None:
        link.revoked_at = utcnow()
        session.add(link)
        session.commit()
    return link


def share_refusal(ctx: Context, website_id: str, token: str, now: float) -> str | None:
    """Why ``token`` does not open the website's previews, None when it does (signed by this
    service for this website, not expired, not revoked)."""
    try:
        found = sharing.verify(secret(ctx.settings), website_id, token, now)
    except sharing.ShareRefused as refused:
        return str(refused)
    with ctx.session() as session:
        link = session.get(ShareLink, found.share_id)
    if link is None or link.website_id != website_id:
        return "This share link is not valid for this preview."
    if link.revoked_at is not None:
        return "This share link was revoked by the website's owner."
    return None
