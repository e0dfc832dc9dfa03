"""Every example of docs/partner-guide.md runs, as written, against a small practice."""

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from tests.world import DAY, window_args

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "partner-guide.md"
BLOCK = re.compile(r"```graphql\n(.*?)```(?:\n```json\n(.*?)```)?", re.S)
EXAMPLES = [(query, variables) for query, variables in BLOCK.findall(GUIDE.read_text())]


def placeholders(world) -> dict[str, str]:
    free = DAY + timedelta(days=1, hours=3)
    return {
        "FOREIGN_APPOINTMENT_ID": world.appointments["B"][0],
        "PRACTICE_ID": world.practice_id("A"),
        "APPOINTMENT_ID": world.appointments["A"][0],
        "PRACTITIONER_ID": world.practitioners["A"][0],
        "PATIENT_ID": world.patients["A"][0],
        "FROM": window_args()["from"],
        "TO": window_args()["to"],
        "FREE_START": free.isoformat(),
        "FREE_END": (free + timedelta(minutes=20)).isoformat(),
    }


def test_the_guide_has_examples():
    assert len(EXAMPLES) >= 8


@pytest.mark.parametrize(
    ("query", "variables"), EXAMPLES, ids=[re.search(r"(query|mutation) (\w+)", q).group(2) for q, _ in EXAMPLES]
)
async def test_guide_example_runs(api, world, query, variables):
    text = variables or "{}"
    for name, value in placeholders(world).items():  # longest names first: FOREIGN_… before …
        text = text.replace(f'"{name}"', json.dumps(value))
    expected = re.search(r"# expect: (\w+)", query)
    response = await api.query(world.keys["full"], query, json.loads(text))
    if expected:
        assert response.codes == {expected.group(1)}
    else:
        assert response.errors == [] and response.status == 200
        assert "cost" in response.body["extensions"]
