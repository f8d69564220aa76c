"""API tokens: created by operators with `orchestrator token create`, stored hashed."""

from __future__ import annotations

import hashlib
import secrets
from enum import StrEnum

from sqlmodel import Session, select

from orchestrator.core.exceptions import Unauthorized
from orchestrator.state.models import ApiToken

TOKEN_PREFIX = "wob_"


class Role(StrEnum):
    ADMIN = "admin"
    USER = "user"


def hash_token(token: str) -> str:
    # Tokens are 256 random bits: a plain SHA-256 is enough, no slow KDF is needed.
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, role: Role, name: str) -> tuple[ApiToken, str]:
    """Store a new token and return it with its clear text (shown once, never stored)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = ApiToken(name=name, role=role.value, token_hash=hash_token(token))
    session.add(record)
    session.flush()
    return record, token


def authenticate(session: Session, token: str | None) -> ApiToken:
    if not token:
        raise Unauthorized("missing token: send 'Authorization: Bearer <token>'")
    record = session.exec(select(ApiToken).where(ApiToken.token_hash == hash_token(token))).first()
    if record is None:
        raise Unauthorized("unknown token: create one with 'orchestrator token create'")
    return record


def is_admin(principal: ApiToken) -> bool:
    return principal.role == Role.ADMIN.value
