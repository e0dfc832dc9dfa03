"""The exposure report answers "which operation of this partner read these patients"."""

from datetime import timedelta

import pytest
from sqlalchemy.orm import Session

from api.ledger import exposure as reports
from api.timeutil import utcnow
from tests.documents.conftest import CODEGEN, by_id, ids
from tests.world import window_args

ONE = "query One($id: ID!) { node(id: $id) { ... on Appointment { patient { lastName } } } }"


@pytest.fixture
async def read_twice(api, world, register, trusted_key):
    """The registered Day (6 appointments, 3 patients) by id, and one appointment's patient as text."""
    register("full", CODEGEN)
    day = await by_id(api, trusted_key("full"), ids(CODEGEN)["Day"], {"practiceId": world.practice_id("A"),
                                                                        **window_args()})
    assert day.errors == []
    one = await api.query(world.keys["full"], ONE, {"id": world.appointments["A"][0]})  # the open key
    assert one.errors == []


def report(sync_engine, **kwargs) -> reports.PartnerExposure:
    with Session(sync_engine) as session:
        return reports.partner_exposure(session, "full", utcnow() - timedelta(hours=1), utcnow(), **kwargs)


@pytest.mark.usefixtures("read_twice")
def test_disclosures_are_broken_down_by_document(sync_engine):
    documents = {d.document_id: d for d in report(sync_engine).documents}
    day = documents[ids(CODEGEN)["Day"]]
    assert (day.operation, day.patients, day.appointments, day.requests) == ("Day", 3, 6, 1)
    ad_hoc = documents[None]  # sent as text, by the open key
    assert (ad_hoc.operation, ad_hoc.patients, ad_hoc.appointments, ad_hoc.requests) == (None, 1, 1, 1)


@pytest.mark.usefixtures("read_twice")
def test_the_report_can_be_filtered_to_one_document(sync_engine, world):
    only_day = report(sync_engine, document_id=ids(CODEGEN)["Day"])
    assert [d.document_id for d in only_day.documents] == [ids(CODEGEN)["Day"]]
    assert len(only_day.patients) == 3 and only_day.practices[0].appointments == 6


@pytest.mark.usefixtures("read_twice")
def test_the_cli_filters_by_document(cli):
    day = ids(CODEGEN)["Day"]
    result = cli("exposure", "--partner", "full", "--document", day, "--format", "json")
    assert result.exit_code == 0, result.output
    assert '"document_id": "%s"' % day in result.output and '"operation": "Day"' in result.output
    assert cli("exposure", "--partner", "full", "--document", "nope").exit_code == 2
