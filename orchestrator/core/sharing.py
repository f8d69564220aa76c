"""Share links: a signed token that opens one website's previews without an API token.

A token is ``<share id>.<expiry>.<signature>``: the expiry in Unix seconds (0: none), the
signature an HMAC-SHA256 of the share id, website id and expiry under the service's key. The
signature proves the service made it; the share's database row is what can revoke it."""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class ShareToken:
    share_id: str
    expires_at: int
    """Unix seconds; 0 for a link that does not expire."""


def sign(secret: bytes, website_id: str, share_id: str, expires_at: int) -> str:
    return f"{share_id}.{expires_at}.{_signature(secret, website_id, share_id, expires_at)}"


def _signature(secret: bytes, website_id: str, share_id: str, expires_at: int) -> str:
    message = f"{share_id}.{website_id}.{expires_at}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class ShareRefused(Exception):
    """Why a share token does not open a preview (said to the visitor on a 403 page)."""


def verify(secret: bytes, website_id: str, token: str, now: float) -> ShareToken:
    """The share a token names, when it is this website's, made by this service and not expired;
    else ShareRefused saying why."""
    share_id, _, rest = token.partition(".")
    expiry, _, signature = rest.partition(".")
    if not share_id or not expiry.isdigit() or not signature:
        raise ShareRefused("This share link is not valid.")
    expected = _signature(secret, website_id, share_id, int(expiry))
    if not hmac.compare_digest(expected, signature):
        raise ShareRefused("This share link is not valid for this preview.")
    if int(expiry) and now >= int(expiry):
        raise ShareRefused("This share link has expired. Ask its owner for a new one.")
    return ShareToken(share_id, int(expiry))
