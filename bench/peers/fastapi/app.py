"""The FastAPI peer for bench/run.sh: the same authenticated, tenant-scoped read as palisade's
GET /api/v1/todos/{id}, written the way the FastAPI + async SQLAlchemy template would.

It verifies the bearer token (HS256, issuer, audience, expiry, the todos:read scope), looks the
tenant up by the token's tenant_id claim (slug or uuid) and selects the row scoped to that tenant,
against the database palisade migrated. Configuration: DATABASE_URL (postgresql+asyncpg://...),
JWT_SECRET (palisade's development secret unless set).
"""

import os
import uuid

import jwt
from fastapi import Depends, FastAPI, Header, HTTPException
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

SECRET = os.environ.get("JWT_SECRET", "palisade-development-secret-never-use-in-production")
engine = create_async_engine(os.environ["DATABASE_URL"], pool_size=10, max_overflow=0)
sessions = async_sessionmaker(engine, expire_on_commit=False)
app = FastAPI()


async def session():
    async with sessions() as s:
        yield s


def claims(authorization: str = Header(default="")) -> dict:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise HTTPException(401, "missing bearer token")
    try:
        decoded = jwt.decode(token, SECRET, algorithms=["HS256"], audience="palisade", issuer="palisade-dev", leeway=30)
    except jwt.PyJWTError as error:
        raise HTTPException(401, "invalid token") from error
    if "todos:read" not in str(decoded.get("scope", "")).split():
        raise HTTPException(403, "insufficient scope")
    return decoded


@app.get("/health")
async def health():
    return {"status": "ok"}


@app.get("/api/v1/todos/{todo_id}")
async def get_todo(todo_id: uuid.UUID, token: dict = Depends(claims), db: AsyncSession = Depends(session)):
    tenant = (
        await db.execute(
            text("SELECT id, status FROM tenants WHERE slug = :key OR id::text = :key"), {"key": str(token.get("tenant_id"))}
        )
    ).first()
    if tenant is None or tenant.status != "active":
        raise HTTPException(403, "unknown or suspended tenant")
    row = (
        await db.execute(
            text("SELECT id, title, done, version, created_at, updated_at FROM todos WHERE tenant_id = :tenant AND id = :id"),
            {"tenant": tenant.id, "id": todo_id},
        )
    ).first()
    if row is None:
        raise HTTPException(404, "not found")
    return {
        "id": str(row.id),
        "title": row.title,
        "done": row.done,
        "version": row.version,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }
