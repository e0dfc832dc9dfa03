"""Keys are trusted unless issued open; an operator switches a key's mode, from its next request."""

import re

from tests.documents.conftest import CODEGEN, by_id, ids

ME = "query Me { viewer { name keyMode } }"


async def test_keys_are_issued_trusted_by_default_and_switch_mode(api, world, cli, register):
    register("full", CODEGEN)
    issued = cli("key", "issue", "full", "--label", "prod")
    assert issued.exit_code == 0 and issued.output.startswith("trusted key for full")
    token = issued.output.strip().splitlines()[-1]
    prefix = re.search(r"prefix (\w+)", issued.output).group(1)
    assert re.search(rf"{prefix}\s+active\s+trusted", cli("key", "list", "full").output)
    assert (await api.query(token, ME)).codes == {"TRUSTED_DOCUMENTS_ONLY"}
    assert (await by_id(api, token, ids(CODEGEN)["Me"])).errors == []

    assert cli("key", "mode", prefix, "open").exit_code == 0
    assert (await api.query(token, ME)).data == {"viewer": {"name": "full", "keyMode": "OPEN"}}
    assert cli("key", "mode", prefix, "trusted").exit_code == 0
    assert (await api.query(token, ME)).codes == {"TRUSTED_DOCUMENTS_ONLY"}


def test_an_open_key_is_issued_on_request(cli, world):
    issued = cli("key", "issue", "full", "--mode", "open")
    assert issued.exit_code == 0 and issued.output.startswith("open key for full")
    assert cli("key", "mode", "nosuchkey", "open").exit_code == 1
