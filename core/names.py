"""Names of datasources, datasinks and applications.

A datasource name becomes a blob-store container, a DEK file name and a mount reference, so
it must be valid everywhere at once. The rule is Azure's container rule (3-63 characters,
lowercase letters, digits and single hyphens, starting and ending with a letter or digit):
the strictest of the places a name lands, and it can never traverse a path.
"""

from __future__ import annotations

import re

from core.errors import InvalidInputError

_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]$")


def check_name(kind: str, name: str) -> str:
    """Return ``name`` if it is a valid ``kind`` name, else raise a one-line InvalidInputError."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInputError(
            f"{kind} name {name!r} is not valid",
            hint="use 3-63 lowercase letters, digits and single hyphens, e.g. 'training-data'",
        )
    return name
