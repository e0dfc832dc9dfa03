"""The conformance suite of the authorization engine: what any engine replacing oso 0.27 must pass
(docs/oso-runway.md). `make conformance` (`pytest -m engine_conformance`) runs these modules' tests, on
SQLite and on PostgreSQL; tests/conftest.py marks them.

Each module holds a property the policy engine decides or enforces: the policy's cases as data, its
translation into SQL row filters, the per-field scopes, the reading horizon, revocation, and the adversarial
suites over the served API. A replacement engine passes when these pass unchanged, with only authz/ rewritten.
"""

from __future__ import annotations

__all__ = ["MARKER", "MODULES"]

MARKER = "engine_conformance"
MODULES = frozenset(
    {
        "tests/authz/test_policy_cases.py",  # every case of authz/policy_tests/*.yaml: allow and deny
        "tests/authz/test_adapter.py",  # the policy's row rules compiled into SQL, never filtered in Python
        "tests/authz/test_field_coverage.py",  # every field of the schema is classified by the policy
        "tests/test_scope_table.py",  # scopes, grant columns, policy fields and ledger groups agree
        "tests/security/test_row_isolation.py",  # a partner never reads another's practices
        "tests/security/test_field_scopes.py",  # a field without its scope is refused
        "tests/security/test_reading_horizon.py",  # sensitive fields only near today, for the practice's own
        "tests/security/test_reading_horizon_property.py",  # ... for all generated grants and times
        "tests/security/test_no_leak_property.py",  # no response carries what the policy denies
        "tests/security/test_revocation.py",  # revocations and narrowed scopes count on the next request
        "tests/ledger/test_exact_ledger.py",  # the ledger records what the response carried
    }
)
