"""Dependencies shared by the routes: the process's context (made once, at start-up), a
database session from it, and the caller."""

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from orchestrator.context import Context
from orchestrator.service.auth import authenticate
from orchestrator.state.models import ApiToken


def get_context(request: Request) -> Context:
    ctx: Context = request.app.state.ctx
    return ctx


ContextDep = Annotated[Context, Depends(get_context)]


def get_session(ctx: ContextDep) -> Iterator[Session]:
    with Session(ctx.database.engine, expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, description="A token from 'orchestrator token create'")


def get_principal(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiToken:
    principal = authenticate(session, credentials.credentials if credentials else None)
    session.commit()  # end the read: the connection goes back to the pool while the body is handled
    return principal


PrincipalDep = Annotated[ApiToken, Depends(get_principal)]
