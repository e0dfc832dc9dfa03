"""The README documents what the code declares: every setting and every error code."""

from pathlib import Path

from api.errors import ErrorCode
from api.settings import Settings

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_readme_starts_with_the_two_commands():
    quick_start = README.split("## Quick start", 1)[1]
    assert quick_start.index("make demo") < quick_start.index("make test") < quick_start.index("##")


def test_every_setting_is_documented():
    missing = [name for name in Settings.model_fields if f"PARTNER_API_{name.upper()}" not in README]
    assert missing == []


def test_every_error_code_is_documented():
    assert [code for code in ErrorCode if f"`{code.value}`" not in README] == []
