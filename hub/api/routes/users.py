"""Accounts (admin token): create, list, disable or enable, reset a password (docs/accounts.md).
The first account of a fresh hub can also come from the command line: `hcp hub users add`."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from ...accounts import users
from ...accounts.deps import client_address
from ...accounts.model import (LOGIN_PATTERN, PASSWORD_MAX, PASSWORD_MIN, PASSWORD_PATTERN, TEXT_PATTERN,
                               InvalidField, Role, User)
from ...accounts.store import Accounts
from ..deps import ADMIN_ERRORS, BODY_ERRORS, StoreDep, require_admin
from ..models import HALL_PATTERN, Problem

router = APIRouter(tags=["accounts"], dependencies=[Depends(require_admin)], responses=ADMIN_ERRORS)

LoginPath = Annotated[str, Path(pattern=LOGIN_PATTERN)]
NOT_FOUND: dict[int | str, dict] = {404: {"model": Problem, "description": "no such user"}}
Password = Annotated[str, Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX, pattern=PASSWORD_PATTERN)]
Text = Annotated[str, Field(pattern=TEXT_PATTERN)]
Place = Annotated[str, Field(pattern=HALL_PATTERN)]

# A handler needs a unit: said in the schema too, so a client (and the fuzzer) knows it
_HANDLER_NEEDS_UNIT = {"if": {"properties": {"role": {"const": "handler"}}, "required": ["role"]},
                       "then": {"required": ["unit"], "properties": {"unit": {"type": "string"}}}}


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=_HANDLER_NEEDS_UNIT)

    login: str = Field(pattern=LOGIN_PATTERN, description="ASCII letters, digits, _ . @ -; stored lower-case")
    name: Text = Field(description="the name pages show")
    role: Role
    region: Place | None = None
    hall: Place | None = None
    unit: Text | None = Field(default=None, description="a handler's unit (required for one): the `unit` "
                                                        "services carry")
    password: Password | None = Field(default=None, description="absent: one is generated and answered once")


class PasswordIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    password: Password | None = None


class UserOut(BaseModel):
    id: int
    login: str
    name: str
    role: Role
    region: str | None
    hall: str | None
    unit: str | None
    disabled: bool
    disabled_at: str | None
    created_at: str
    updated_at: str
    password_changed_at: str
    last_login_at: str | None

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(**user.as_dict())


class UserCreated(UserOut):
    password: str | None = Field(description="the generated password, shown only here; null if one was given")


def _bad(exc: InvalidField) -> RequestValidationError:
    """A field the schema let through but the rules refuse: FastAPI's 422 shape, with the reason."""
    return RequestValidationError([{"type": "value_error", "loc": ["body", exc.field], "msg": str(exc),
                                    "input": None}])


@router.post("/users", status_code=status.HTTP_201_CREATED, response_model=UserCreated,
             responses={**BODY_ERRORS, 409: {"model": Problem, "description": "the login name is taken"}})
async def create_user(request: Request, store: StoreDep, body: UserIn) -> UserCreated:
    """Create an account. A handler needs a `unit`. Without `password` one is generated and
    answered here, once. 422 with the reason for a bad login name, password or scope."""
    try:
        user, generated = await users.create_user(
            store, login=body.login, name=body.name, role=body.role, region=body.region, hall=body.hall,
            unit=body.unit, password=body.password, by="admin-token", client=client_address(request))
    except users.UserExists as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except InvalidField as exc:
        raise _bad(exc) from None
    return UserCreated(**user.as_dict(), password=generated)


@router.get("/users", response_model=list[UserOut])
async def list_users(store: StoreDep, role: Role | None = None,
                     state: Annotated[Literal["all", "active", "disabled"], Query()] = "all") -> list[UserOut]:
    """Every account (never a password or its hash), by login name; `role`, `state` filter."""
    found = await Accounts(store).users(role=role, include_disabled=state != "active")
    if state == "disabled":
        found = [u for u in found if u.disabled]
    return [UserOut.of(u) for u in found]


async def _set_disabled(request: Request, store: StoreDep, login: str, disabled: bool) -> UserOut:
    user = await users.set_disabled(store, login, disabled, by="admin-token", client=client_address(request))
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {login}")
    return UserOut.of(user)


@router.post("/users/{login}/disable", response_model=UserOut, responses=NOT_FOUND)
async def disable_user(request: Request, store: StoreDep, login: LoginPath) -> UserOut:
    """Disable the account: its sessions end now and it cannot sign in. Again: no change."""
    return await _set_disabled(request, store, login, True)


@router.post("/users/{login}/enable", response_model=UserOut, responses=NOT_FOUND)
async def enable_user(request: Request, store: StoreDep, login: LoginPath) -> UserOut:
    """Enable a disabled account again (its password is unchanged)."""
    return await _set_disabled(request, store, login, False)


@router.post("/users/{login}/password", response_model=UserCreated, responses={**NOT_FOUND, **BODY_ERRORS})
async def reset_password(request: Request, store: StoreDep, login: LoginPath,
                         body: PasswordIn | None = None) -> UserCreated:
    """Set a new password (generated and answered once when the body has none) and end the
    account's sessions."""
    try:
        done = await users.reset_password(store, login, body.password if body else None, by="admin-token",
                                          client=client_address(request))
    except InvalidField as exc:
        raise _bad(exc) from None
    if done is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no user {login}")
    user, generated = done
    return UserCreated(**user.as_dict(), password=generated)
