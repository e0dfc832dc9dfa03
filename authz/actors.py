"""The actor as the policy sees it."""

from dataclasses import dataclass
from datetime import datetime

from authz.adapter import SqlParameter

#: Stands for the request time in SQL filters, bound when each query runs.
REQUEST_TIME = SqlParameter("request_time")


@dataclass(frozen=True)
class PartnerActor:
    """`Partner` in Polar: the authenticated partner making the request.

    `request_time` is a real datetime for in-memory decisions and `REQUEST_TIME` while a
    filter is compiled to SQL, so that the compiled filter can be reused by later requests.
    """

    id: int
    name: str
    request_time: datetime | SqlParameter
