"""Each worker keeps a partner's documents under its documents version, and refuses one that no
longer validates against the schema it serves."""

import pytest
import strawberry
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from api.data.models import Partner
from api.documents.analysis import DocumentRefused
from api.documents.registry import DocumentRegistry
from api.protection.shape_limits import limit_rules
from api.schema import schema
from api.settings import Settings
from tests.documents.conftest import CODEGEN, ids


def version_of(sync_engine, name: str) -> tuple[int, int]:
    with Session(sync_engine) as session:
        partner = session.scalars(select(Partner).where(Partner.name == name)).one()
        return partner.id, partner.documents_version


async def test_a_document_is_read_once_per_version(register, world, sync_engine, async_engine):
    register("full", CODEGEN)
    partner_id, version = version_of(sync_engine, "full")
    registry = DocumentRegistry(schema._schema, Settings(), limit_rules(Settings()))
    reads = 0
    async with AsyncSession(async_engine) as session:

        async def counted(statement):
            nonlocal reads
            reads += 1
            return await session.execute(statement)

        first = await registry.find(counted, partner_id, version, ids(CODEGEN)["Day"])
        again = await registry.find(counted, partner_id, version, ids(CODEGEN)["Day"])
        assert first is again and reads == 1 and first.cost == 350
        assert await registry.find(counted, partner_id, version, "sha256:" + "2" * 64) is None
        assert await registry.find(counted, partner_id, version + 1, ids(CODEGEN)["Day"]) is not first


async def test_a_document_the_served_schema_no_longer_has_fields_for_is_refused(register, world, sync_engine,
                                                                                async_engine):
    register("full", CODEGEN)
    partner_id, version = version_of(sync_engine, "full")

    @strawberry.type
    class Query:
        hello: str = "world"

    other = strawberry.Schema(query=Query)
    registry = DocumentRegistry(other._schema, Settings(), limit_rules(Settings()))
    async with AsyncSession(async_engine) as session:
        with pytest.raises(DocumentRefused, match="Cannot query field 'viewer'"):
            await registry.find(session.execute, partner_id, version, ids(CODEGEN)["Me"])


def test_a_change_to_a_partners_documents_bumps_its_version(register, world, sync_engine):
    before = version_of(sync_engine, "full")[1]
    register("full", CODEGEN)
    assert version_of(sync_engine, "full")[1] > before
