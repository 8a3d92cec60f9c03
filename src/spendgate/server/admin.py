"""Administration: budgets and prices (list, get, create, update, delete; every change
audited), budget status, the audit log, API keys and the alert configuration."""

import re
from enum import Enum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from spendgate.control import Kind, audit_dict
from spendgate.errors import NotFoundError, ValidationError
from spendgate.server.auth import Principal, require
from spendgate.server.context import Context, context
from spendgate.server.problems import ERROR_RESPONSES
from spendgate.server.schemas import (
    AuditOut,
    BudgetIn,
    BudgetStatusOut,
    KeyIn,
    KeyOut,
    ManagedOut,
    NewKeyOut,
    SourceIn,
)
from spendgate.store.base import ApiKey
from spendgate.windows import from_micros

router = APIRouter(responses=ERROR_RESPONSES)
Ctx = Annotated[Context, Depends(context)]
# Budgets and prices are shared by every service (a price serves every service that calls its
# source; a change to a budget could widen its scope): limited keys are refused, and see their
# own budgets' standing through the filtered /api/budgets/status. Keys are confined instead:
# a limited admin manages the keys within its own rights.
Reader = Annotated[Principal, Depends(require("read", services="all"))]
Admin = Annotated[Principal, Depends(require("admin", services="all"))]
FilteredReader = Annotated[Principal, Depends(require("read", services="filtered"))]
FilteredAdmin = Annotated[Principal, Depends(require("admin", services="filtered"))]
OwnAdmin = Annotated[Principal, Depends(require("admin", services="own"))]
NamePath = Annotated[str, Path(min_length=1, max_length=200)]


def _anything_but(word: str) -> str:
    """A pattern of every non-empty string but `word`, without look-ahead (which pydantic's
    regex engine refuses): a proper prefix, a prefix and another letter, or `word` and more."""
    parts = [f"{re.escape(word[:i])}[^{re.escape(word[i])}].*" for i in range(len(word))]
    parts += [re.escape(word[:i]) for i in range(1, len(word))] + [f"{re.escape(word)}.+"]
    return f"^(?:{'|'.join(parts)})$"


# A budget's name is any but `status` (budgets.RESERVED_NAMES): that path, declared before
# these routes, is every budget's status.
BudgetNamePath = Annotated[str, Path(min_length=1, max_length=200, pattern=_anything_but("status"))]

# -- budgets and prices ----------------------------------------------------------------------


def _spec(body: BudgetIn | SourceIn, name: str | None = None) -> tuple[str, dict[str, Any]]:
    """The name and table of a create or update body (a name in the body must match the path)."""
    spec = body.model_dump(exclude_unset=True)
    given = spec.pop("name", None)
    if name is None:
        if given is None:
            raise ValidationError("name", None, "a name for the new entry")
        return given, spec
    if given is not None and given != name:
        raise ValidationError("name", given, f"{name!r}, the name in the path (or leave it out)")
    return name, spec


def _crud(kind: Kind, collection: str, body_type: type[BudgetIn] | type[SourceIn]) -> None:
    """The routes of one kind of definition: list, get, create, replace, patch, delete."""
    path = f"/api/{collection}"
    tags: list[str | Enum] = [collection]
    name_path = BudgetNamePath if kind == "budget" else NamePath

    @router.get(path, response_model=list[ManagedOut], tags=tags, name=f"list_{collection}")
    def listing(ctx: Ctx, who: Reader) -> Any:
        return [m.to_dict() for m in ctx.control.entries(kind)]

    @router.get(f"{path}/{{name:path}}", response_model=ManagedOut, tags=tags, name=f"get_{kind}")
    def one(name: name_path, ctx: Ctx, who: Reader) -> Any:  # type: ignore[valid-type]
        return ctx.control.get(kind, name).to_dict()

    @router.post(path, response_model=ManagedOut, status_code=201, tags=tags, name=f"create_{kind}")
    def create(body: body_type, ctx: Ctx, who: Admin) -> Any:  # type: ignore[valid-type]
        name, spec = _spec(body)
        return ctx.control.create(kind, name, spec, actor=who.actor).to_dict()

    @router.put(
        f"{path}/{{name:path}}", response_model=ManagedOut, tags=tags, name=f"update_{kind}"
    )
    def update(name: name_path, body: body_type, ctx: Ctx, who: Admin) -> Any:  # type: ignore[valid-type]
        _, spec = _spec(body, name)
        return ctx.control.update(kind, name, spec, actor=who.actor).to_dict()

    @router.patch(
        f"{path}/{{name:path}}", response_model=ManagedOut, tags=tags, name=f"patch_{kind}"
    )
    def patch(name: name_path, body: body_type, ctx: Ctx, who: Admin) -> Any:  # type: ignore[valid-type]
        _, changes = _spec(body, name)
        return ctx.control.patch(kind, name, changes, actor=who.actor).to_dict()

    @router.delete(
        f"{path}/{{name:path}}", response_model=AuditOut, tags=tags, name=f"delete_{kind}"
    )
    def delete(name: name_path, ctx: Ctx, who: Admin) -> Any:  # type: ignore[valid-type]
        return audit_dict(ctx.control.delete(kind, name, actor=who.actor))


@router.get("/api/budgets/status", response_model=list[BudgetStatusOut], tags=["budgets"])
def budget_status(ctx: Ctx, who: FilteredReader) -> Any:
    """Every budget's spent, reserved, remaining and level in its current window (for a key
    limited to services, only the budgets scoped to one of them)."""
    ctx.gate.refresh()
    return [s.to_dict() for s in ctx.gate.status() if who.sees_budget(s.budget)]


# Declared after /status so that the literal path wins over /{name}.
_crud("budget", "budgets", BudgetIn)
_crud("source", "prices", SourceIn)


@router.get("/api/audit", response_model=list[AuditOut], tags=["audit"])
def audit(
    ctx: Ctx,
    who: Admin,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> Any:
    """Changes to budgets, prices, alert settings and keys, newest first."""
    return [audit_dict(e) for e in ctx.control.audit(limit=limit, before=before)]


# -- keys -------------------------------------------------------------------------------------


def key_out(key: ApiKey) -> dict[str, Any]:
    """A key's public fields."""
    return {
        "key_id": key.key_id,
        "name": key.name,
        "scope": key.scope,
        "services": None if key.services is None else list(key.services),
        "created_at": from_micros(key.created_at).isoformat(),
        "created_by": key.created_by,
        "revoked_at": None if key.revoked_at is None else from_micros(key.revoked_at).isoformat(),
    }


@router.get("/api/keys", response_model=list[KeyOut], tags=["keys"])
def list_keys(ctx: Ctx, who: FilteredAdmin) -> Any:
    """Every API key, revoked ones included (never a secret); for a key limited to services,
    the keys with no more rights than its own."""
    keys = ctx.keys.keys()
    return [key_out(k) for k in keys if who.holds(k.scope, k.services)]


@router.post("/api/keys", response_model=NewKeyOut, status_code=201, tags=["keys"])
def create_key(body: KeyIn, ctx: Ctx, who: OwnAdmin) -> Any:
    """A new key. Its `token` is in this answer only: it is stored as a hash. A key may
    create only keys with no more rights than its own (403)."""
    who.check_grant(body.scope, body.services)
    token, key = ctx.keys.create(
        body.name, body.scope, services=body.services, actor=who.actor, now=ctx.now_us()
    )
    return {"token": token, "key": key_out(key)}


@router.delete("/api/keys/{key_id:path}", response_model=KeyOut, tags=["keys"])
def revoke_key(
    key_id: Annotated[str, Path(min_length=1, max_length=64)], ctx: Ctx, who: OwnAdmin
) -> Any:
    """Revoke a key: every request with it fails from now on. A key may revoke only keys
    with no more rights than its own (403)."""
    target = next((k for k in ctx.keys.keys() if k.key_id == key_id), None)  # noqa: SIM118
    if target is None:
        raise NotFoundError("key", key_id)
    who.check_revoke(target)
    key = ctx.keys.revoke(key_id, actor=who.actor, now=ctx.now_us())
    if key is None:
        raise NotFoundError("key", key_id)
    return key_out(key)
