"""A record as the field rules see it: read through one grant, inside its reading horizon or not."""

from dataclasses import dataclass

from api.data.models import Grant


@dataclass(frozen=True)
class GrantedRecord:
    """`Record` in Polar: an appointment or a patient read through `grant`.

    `in_horizon` is decided by the application in SQL, once per query, from the grant's days back
    and ahead (api/services/horizon.py); the policy only says which fields need it.
    """

    grant: Grant
    in_horizon: bool
