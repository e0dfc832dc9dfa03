"""The scopes a practice can grant to a partner: the single list read by models, CLI and docs."""

from enum import StrEnum


class Scope(StrEnum):
    APPOINTMENTS_READ = "appointments:read"
    APPOINTMENTS_WRITE = "appointments:write"
    PATIENTS_IDENTITY = "patients:identity"
    PATIENTS_CONTACT = "patients:contact"
    APPOINTMENTS_REASON = "appointments:reason"

    @property
    def column(self) -> str:
        """Name of the boolean column of `grants` that holds this scope (and of the Polar field)."""
        return self.value.replace(":", "_")

    @property
    def description(self) -> str:
        return SCOPE_DESCRIPTIONS[self]


SCOPE_DESCRIPTIONS = {
    Scope.APPOINTMENTS_READ: "See the practice, its practitioners and its appointments (times, status).",
    Scope.APPOINTMENTS_WRITE: "Book, reschedule and cancel appointments at the practice.",
    Scope.PATIENTS_IDENTITY: "Read patients' names, gender and birth date.",
    Scope.PATIENTS_CONTACT: "Read patients' phone number and e-mail address.",
    Scope.APPOINTMENTS_REASON: "Read the medical reason of appointments (sensitive health data).",
}


def parse_scopes(text: str) -> set[Scope]:
    """Parse a comma-separated list such as `appointments:read,patients:identity`."""
    names = {part.strip() for part in text.split(",") if part.strip()}
    unknown = names - {s.value for s in Scope}
    if unknown:
        raise ValueError(
            f"unknown scope(s): {', '.join(sorted(unknown))}; known: {', '.join(s.value for s in Scope)}"
        )
    return {Scope(name) for name in names}
