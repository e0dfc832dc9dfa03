"""The replay cache shared by workers: one winner among simultaneous uses of a jti, and rows purged
once their JWT has expired."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from api.data.models import UsedJti
from api.identity import replay
from api.timeutil import utcnow
from tests.oauth_client import SigningKey, claims, register, token_form


async def test_simultaneous_uses_of_one_assertion_get_one_token(sync_engine, make_api, world):
    key = SigningKey("race")
    client_id = register(sync_engine, "full", key)
    workers = [make_api() for _ in range(2)]
    form = token_form(key.sign(claims(client_id)))
    answers = await asyncio.gather(*(workers[i % 2].http.post("/oauth/token", data=form) for i in range(8)))
    assert sorted(a.status_code for a in answers) == [200] + [401] * 7


async def test_expired_entries_are_purged_and_live_ones_kept(async_engine):
    now = utcnow()
    async with AsyncSession(async_engine) as session:
        assert await replay.first_use(session, "dpop", "thumb", "old", now + timedelta(seconds=1), now)
        assert await replay.first_use(session, "dpop", "thumb", "live", now + timedelta(minutes=5), now)
        assert not await replay.first_use(session, "dpop", "thumb", "live", now + timedelta(minutes=5), now)
        assert await replay.first_use(session, "assertion", "thumb", "live", now + timedelta(minutes=5), now)
        later = now + timedelta(seconds=2)
        assert await replay.first_use(session, "dpop", "thumb", "new", later + timedelta(minutes=1), later)
        assert (await session.execute(select(func.count()).select_from(UsedJti))).scalar_one() == 3
