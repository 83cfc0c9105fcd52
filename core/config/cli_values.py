"""How `config add-application` reads its ``--mounts``, ``--ports`` and comma lists.

The CLI and the scenario steps that perform its narrated command lines
(``core.scenario.operations``) read the same option values; one reader here means a narrated
line can never build a different application from the one the typed line builds.
"""

from __future__ import annotations

from collections.abc import Iterable

from core.errors import InvalidInputError


def split_list(values: Iterable[str]) -> list[str]:
    """Repeated and comma-separated values as one list (``--ports 80,443 --ports 8080``)."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def parse_mount(text: str) -> dict[str, str]:
    """``src=NAME,dst=PATH`` as the fragment's mount (``source``, ``target``)."""
    parts = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
    if set(parts) != {"src", "dst"} or len(text.split(",")) != 2:
        raise InvalidInputError(
            f"--mounts {text!r} is not 'src=<datasource>,dst=<path>'",
            hint="e.g. --mounts src=training-data,dst=/mnt/data",
        )
    return {"source": parts["src"], "target": parts["dst"]}


def parse_ports(values: Iterable[str]) -> list[int]:
    """``--ports`` values (repeated or comma-separated) as port numbers."""
    given = list(values)
    try:
        return [int(port) for port in split_list(given)]
    except ValueError:
        raise InvalidInputError(f"--ports {', '.join(given)} are not numbers", hint="e.g. --ports 8080") from None
