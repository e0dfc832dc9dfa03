"""schema.graphql breaks no client of the last released schema without saying so: every breaking
change graphql-core finds is announced, with its reason, in schema-releases/breaking-changes.toml."""

import tomllib
from datetime import date
from pathlib import Path

from graphql import build_schema, find_breaking_changes

ROOT = Path(__file__).resolve().parents[2]
RELEASES = ROOT / "schema-releases"


def breaking_changes(current_sdl: str | None = None) -> set[tuple[str, str]]:
    released = build_schema((RELEASES / "released.graphql").read_text())
    current = build_schema(current_sdl or (ROOT / "schema.graphql").read_text())
    return {(change.type.name, change.description) for change in find_breaking_changes(released, current)}


def announced() -> list[dict]:
    return tomllib.loads((RELEASES / "breaking-changes.toml").read_text()).get("change", [])


def unannounced_changes(current_sdl: str | None = None) -> list[tuple[str, str]]:
    return sorted(breaking_changes(current_sdl) - {(entry["type"], entry["description"]) for entry in announced()})


def test_every_breaking_change_since_the_release_is_announced():
    unannounced = unannounced_changes()
    assert unannounced == [], (
        "breaking changes to announce in schema-releases/breaking-changes.toml (with a reason), or to avoid "
        "(deprecate first: README, 'Schema changes'):\n" + "\n".join(f"{t}: {d}" for t, d in unannounced)
    )


def test_every_announcement_is_a_change_that_happens():
    stale = sorted({(entry["type"], entry["description"]) for entry in announced()} - breaking_changes())
    assert stale == [], f"announced but not (or no longer) made: {stale}"


def test_every_announcement_says_why_and_when():
    for entry in announced():
        assert len(entry["reason"].split()) >= 5 and isinstance(entry["announced"], date), entry


def test_renaming_a_field_or_making_an_argument_required_would_be_caught():
    current = (ROOT / "schema.graphql").read_text()
    renamed = current.replace("  rateLimit: RateLimit!", "  budget: RateLimit!")
    assert renamed != current
    assert unannounced_changes(renamed) == [("FIELD_REMOVED", "Field Query.rateLimit was removed.")]
    required = current.replace("practitionerId: ID = null", "practitionerId: ID!", 1)
    assert [kind for kind, _ in unannounced_changes(required)] == ["ARG_CHANGED_KIND"]
