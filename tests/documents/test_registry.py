"""Each worker keeps a partner's documents under its documents version, and refuses one that no
longer validates against the schema it serves."""

import json

import pytest
import strawberry
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from api.data.models import Partner, TrustedDocument
from api.documents.analysis import DocumentRefused
from api.documents.manifests import document_id_of
from api.documents.registry import DocumentRegistry
from api.protection.shape_limits import limit_rules
from api.schema import schema
from api.settings import Settings
from tests.documents.conftest import CODEGEN, by_id, ids


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


async def test_a_document_priced_at_0_before_the_floor_costs_a_point(
    make_api, world, register, trusted_key, sync_engine
):
    """A registered document is charged the price stored at its registration: one stored at 0 by the
    release before every operation cost a point ran free, on no budget (outside review, helper 51)."""
    text = "query Free { __typename }"
    document_id = document_id_of(text)
    register("full", json.dumps({document_id: text}).encode())
    with Session(sync_engine) as session, session.begin():  # what the release before stored for it
        session.execute(update(TrustedDocument).where(TrustedDocument.document_id == document_id).values(cost=0))
    api, key = make_api(budget_capacity=3, budget_refill_per_second=0.001), trusted_key("full")
    answers = [await by_id(api, key, document_id) for _ in range(4)]
    assert [answer.status for answer in answers] == [200, 200, 200, 429]
    assert answers[0].body["extensions"]["cost"]["actualQueryCost"] == 1
