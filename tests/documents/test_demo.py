"""The demo's trusted key runs its registered sample manifest, by id, and nothing else."""

from sqlalchemy.orm import Session

from api.documents.demo import DEMO_MANIFEST, DEMO_PARTNER, add_trusted_demo_key
from api.operators import accounts as operators
from api.scopes import Scope
from tests.documents.conftest import CODEGEN, by_id, make_checker


def test_the_demo_manifest_is_the_codegen_sample():
    assert DEMO_MANIFEST.read_bytes() == CODEGEN.read_bytes()


async def test_the_demo_trusted_key_runs_the_sample_by_id_once_issued(api, world, sync_engine):
    with Session(sync_engine) as session, session.begin():
        operators.create_partner(session, DEMO_PARTNER)
        operators.grant_practice(session, DEMO_PARTNER, "A", set(Scope))
    keys = {DEMO_PARTNER: {"key": "open key"}}
    entry = add_trusted_demo_key(sync_engine, make_checker(), keys)
    assert add_trusted_demo_key(sync_engine, make_checker(), keys) is entry  # once: kept in the keys file
    assert set(entry["documents"]) == {"Me", "Day", "One", "Sync", "Cancel"}
    response = await by_id(api, entry["trusted_key"], entry["documents"]["Me"])
    assert response.data["viewer"] == {"name": DEMO_PARTNER, "keyPrefix": entry["trusted_key"].split("_")[1],
                                       "grants": response.data["viewer"]["grants"]}
    assert (await api.query(entry["trusted_key"], "{ viewer { name } }")).codes == {"TRUSTED_DOCUMENTS_ONLY"}
