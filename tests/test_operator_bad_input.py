"""Every operator command answers bad input with a clear error (exit 1 or 2), never a stack trace,
and changes nothing (outside review, helper 50: each of these ended in a traceback, or ran)."""

from __future__ import annotations

import re

import pytest

LONG = "x" * 101


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["grant", "limits", "full", "A", "--daily-cap", "99999999999999999999999"], "must be from 1 to"),
        (["grant", "limits", "full", "A", "--patients-per-day", "99999999999"], "must be from 1 to"),
        (["key", "issue", "full", "--expires", "9999-12-31T23:59:59-01:00"], "out of the calendar's range"),
        (["key", "issue", "full", "--label", LONG], "at most 100 characters"),
        (["exposure", "--partner", "full", "--until", "0001-01-01T00:00:00+14:00"], "out of the calendar's range"),
        (["exposure", "--partner", "full", "--since", "2026-12-01T00:00:00Z", "--until", "2026-11-01T00:00:00Z"],
         "the period is empty"),
        (["exposure", "--partner", "full", "--output", "/nonexistent/dir/report.html"], "cannot write"),
        (["exposure", "--partner", "full", "--output", "/tmp"], "cannot write /tmp: Is a directory"),
        (["exposure", "--partner", "full", "--output", "/proc/report.html"], "cannot write"),
        (["documents", "add", "full", "/nonexistent/manifest.json"], "cannot read"),
        (["client", "register", "full", "--jwks-url", "https://example.org/" + "j" * 500], "at most 500 characters"),
    ],
    ids=lambda value: value if isinstance(value, str) else None,
)
def test_bad_input_is_a_clear_error(cli, world, args, says):
    result = cli(*args)
    assert result.exit_code in (1, 2), result.output
    assert says in " ".join(re.sub("[│╭╮╰╯─]", " ", result.output).split()), result.output  # unwrapped from its box
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output


def test_a_refused_key_label_issues_no_key(cli, world):
    before = cli("key", "list", "full").output
    assert cli("key", "issue", "full", "--label", LONG).exit_code == 1
    assert cli("key", "list", "full").output == before


def test_a_failed_report_leaves_the_earlier_one_as_it_was(cli, world, tmp_path):
    """The file was opened, truncated, before the partner was looked up (helper 52)."""
    earlier = tmp_path / "incident.html"
    earlier.write_text("the report of last month")
    failed = cli("exposure", "--partner", "ful", "--format", "html", "--output", str(earlier))
    assert failed.exit_code == 1 and earlier.read_text() == "the report of last month"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["incident.html"]  # nothing left beside it
    assert cli("exposure", "--partner", "full", "--format", "html", "--output", str(earlier)).exit_code == 0
    assert earlier.read_text().startswith("<!DOCTYPE html>")
