"""The baseline: bare strawberry serving the same page with the same data loading (a page query,
then one batched query per nested type), and no authentication, authorization, cost analysis
or budgets. Only what any strawberry app would have: its parser and validation caches. And the
same schema serving rows held in memory: strawberry's share of the CPU floor."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated

import strawberry
from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload
from strawberry.dataloader import DataLoader
from strawberry.extensions import ParserCache, ValidationCache

from api.data import models


@dataclass
class Context:
    page: Callable[[str, datetime, datetime, int], Awaitable[Sequence[models.Appointment]]]
    patients: DataLoader
    practitioners: DataLoader


@strawberry.type
class Patient:
    id: strawberry.ID
    first_name: str
    last_name: str
    gender: str
    birth_date: date | None
    phone: str | None
    email: str | None


@strawberry.type
class Practitioner:
    id: strawberry.ID
    first_name: str
    last_name: str
    specialty: str


@strawberry.type
class Appointment:
    row: strawberry.Private[models.Appointment]
    id: strawberry.ID
    starts_at: datetime
    ends_at: datetime
    status: str
    reason: str | None

    @strawberry.field
    async def patient(self, info: strawberry.Info[Context, None]) -> Patient:
        p = await info.context.patients.load(self.row.patient_id)
        return Patient(id=p.public_id, first_name=p.first_name, last_name=p.last_name, gender=p.gender.value,
                       birth_date=p.birth_date, phone=p.phone, email=p.email)

    @strawberry.field
    async def practitioner(self, info: strawberry.Info[Context, None]) -> Practitioner:
        m = await info.context.practitioners.load((self.row.practice_id, self.row.practitioner_id))
        return Practitioner(id=m.public_id, first_name=m.practitioner.first_name, last_name=m.practitioner.last_name,
                            specialty=m.practitioner.specialty)


@strawberry.type
class Edge:
    node: Appointment


@strawberry.type
class Connection:
    edges: list[Edge]


@strawberry.type
class Query:
    @strawberry.field
    async def appointments(
        self,
        info: strawberry.Info[Context, None],
        practice_id: strawberry.ID,
        from_: Annotated[datetime, strawberry.argument(name="from")],
        to: datetime,
        first: int = 50,
    ) -> Connection:
        rows = await info.context.page(practice_id, from_, to, first)
        return Connection(
            edges=[
                Edge(
                    node=Appointment(
                        row=r,
                        id=r.public_id,
                        starts_at=r.starts_at,
                        ends_at=r.ends_at,
                        status=r.status.value,
                        reason=r.reason,
                    )
                )
                for r in rows
            ]
        )


def make_context(session: AsyncSession) -> Context:
    async def page(practice_id: str, from_: datetime, to: datetime, first: int) -> Sequence[models.Appointment]:
        practice = (
            await session.execute(select(models.Practice.id).where(models.Practice.public_id == practice_id))
        ).scalar_one()
        return (
            (
                await session.execute(
                    select(models.Appointment)
                    .where(
                        models.Appointment.practice_id == practice,
                        models.Appointment.starts_at >= from_,
                        models.Appointment.starts_at < to,
                    )
                    .order_by(models.Appointment.starts_at, models.Appointment.public_id)
                    .limit(first + 1)
                )
            )
            .scalars()
            .all()[:first]
        )

    async def patients(ids):
        rows = (await session.execute(select(models.Patient).where(models.Patient.id.in_(set(ids))))).scalars()
        found = {r.id: r for r in rows}
        return [found[i] for i in ids]

    async def practitioners(keys):
        rows = (
            await session.execute(
                select(models.PracticeMembership)
                .options(joinedload(models.PracticeMembership.practitioner))
                .where(
                    tuple_(models.PracticeMembership.practice_id, models.PracticeMembership.practitioner_id).in_(
                        set(keys)
                    )
                )
            )
        ).scalars()
        found = {(r.practice_id, r.practitioner_id): r for r in rows}
        return [found[k] for k in keys]

    return Context(page, DataLoader(patients), DataLoader(practitioners))


async def in_memory_context(session: AsyncSession, variables: dict[str, str]) -> Callable[[], Context]:
    """Contexts serving the page from rows loaded once: strawberry's own work, without a database."""
    loading = make_context(session)
    rows = await loading.page(
        variables["p"], datetime.fromisoformat(variables["from"]), datetime.fromisoformat(variables["to"]), 50
    )
    patients = dict(
        zip([r.patient_id for r in rows], await loading.patients.load_many([r.patient_id for r in rows]), strict=True)
    )
    keys = [(r.practice_id, r.practitioner_id) for r in rows]
    memberships = dict(zip(keys, await loading.practitioners.load_many(keys), strict=True))

    async def page(*_: object) -> Sequence[models.Appointment]:
        return rows

    async def from_patients(ids):  # type: ignore[no-untyped-def]
        return [patients[i] for i in ids]

    async def from_memberships(keys):  # type: ignore[no-untyped-def]
        return [memberships[k] for k in keys]

    return lambda: Context(page, DataLoader(from_patients), DataLoader(from_memberships))


def bare_schema(caches: bool = True) -> strawberry.Schema:
    extensions = [lambda: ParserCache(maxsize=128), lambda: ValidationCache(maxsize=128)] if caches else []
    return strawberry.Schema(query=Query, extensions=extensions)


def bare_asgi(sessions, caches: bool):  # type: ignore[no-untyped-def]
    """The bare schema behind strawberry's ASGI view, one database session per request."""
    from strawberry.asgi import GraphQL

    class View(GraphQL):
        async def get_context(self, request, response):  # type: ignore[no-untyped-def]
            return make_context(request.scope["bench.session"])

    view = View(bare_schema(caches), graphql_ide=None)

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return await view(scope, receive, send)
        async with sessions() as session:
            scope["bench.session"] = session
            await view(scope, receive, send)

    return app
