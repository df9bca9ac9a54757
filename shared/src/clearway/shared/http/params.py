"""Query parameters with a stricter reading than pydantic's default.

A date-time query parameter is an RFC 3339 date-time in the OpenAPI contract; pydantic
would also read a bare number as Unix seconds (``created_before=0`` as 1970), which the
contract does not allow, so such a value is refused with the parameter named.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import AwareDatetime, BeforeValidator

_NUMBER = re.compile(r"[+-]?\d+(\.\d*)?([eE][+-]?\d+)?")


def rfc3339_only(value: object) -> object:
    """Refuse a bare number where an RFC 3339 date-time is expected (RFC 3339 §5.6)."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        raise ValueError("must be an RFC 3339 date-time, such as 2026-11-30T12:00:00Z")
    return value


#: An RFC 3339 date-time (a bare number refused).
Rfc3339 = Annotated[datetime, BeforeValidator(rfc3339_only)]
#: An RFC 3339 date-time with its offset (a bare number, or no offset, refused).
AwareRfc3339 = Annotated[AwareDatetime, BeforeValidator(rfc3339_only)]
