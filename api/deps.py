"""Dependencies shared by the routes."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from orchestrator.adapters.database import get_engine
from orchestrator.config import Settings, get_settings
from orchestrator.service.auth import authenticate
from orchestrator.state.models import ApiToken


def get_session() -> Iterator[Session]:
    with Session(get_engine(), expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

_bearer = HTTPBearer(auto_error=False, description="A token from 'orchestrator token create'")


def get_principal(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiToken:
    principal = authenticate(session, credentials.credentials if credentials else None)
    session.commit()  # end the read: the connection goes back to the pool while the body is handled
    return principal


PrincipalDep = Annotated[ApiToken, Depends(get_principal)]
