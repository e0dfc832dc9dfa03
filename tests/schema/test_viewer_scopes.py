"""`viewer` spells scopes as the docs, the CLI and (issue 19) OAuth do: `appointments:read`."""

from api.scopes import Scope


async def test_viewer_spells_scopes_as_the_docs_and_the_cli(api, world):
    response = await api.query(world.keys["full"], "{ viewer { grants { scopes } } }")
    (grant,) = response.data["viewer"]["grants"]
    assert grant["scopes"] == sorted(s.value for s in Scope)
