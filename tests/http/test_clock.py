"""The app reads the time from one injected clock: the ledger, key expiry and reading horizons all
follow it, so that tests and the scenario benchmark make days pass without waiting."""

from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from api.clock import SettableClock
from api.data.models import AccessRecord, PartnerKey
from api.timeutil import utcnow


async def test_the_ledger_records_each_request_at_the_injected_time(make_api, world, sync_engine):
    clock = SettableClock(utcnow() + timedelta(days=3))
    api = make_api(clock=clock)
    await api.query(world.keys["full"], "{ viewer { name } }")
    clock.advance(hours=5)
    await api.query(world.keys["full"], "{ viewer { name } }")
    with Session(sync_engine) as session:
        times = list(session.scalars(select(AccessRecord.at).order_by(AccessRecord.id)))
    assert times == [clock() - timedelta(hours=5), clock()]


async def test_a_key_expires_when_the_clock_passes_its_expiry(make_api, world, sync_engine):
    expiry = utcnow() + timedelta(days=2)
    with Session(sync_engine) as session, session.begin():
        session.execute(update(PartnerKey).values(expires_at=expiry))
    clock = SettableClock(expiry - timedelta(minutes=1))
    api = make_api(clock=clock)
    assert (await api.query(world.keys["full"], "{ viewer { name } }")).status == 200
    clock.advance(minutes=2)
    refused = await api.query(world.keys["full"], "{ viewer { name } }")
    assert (refused.status, refused.codes) == (401, {"UNAUTHENTICATED"})
