"""The uvicorn pin holds: ``core.http_guard`` builds on a private uvicorn class.

``GuardedHttpProtocol`` (and governance's ``CoalescingHttpProtocol`` on top of it) subclass
``uvicorn.protocols.http.httptools_impl.HttpToolsProtocol``, overriding its parser callbacks
and reading its attributes: uvicorn has no public hook for a request-head timeout or a head
size cap. That class may change in any uvicorn release, so pyproject.toml pins uvicorn to the
minor release the guard was checked against, and these tests fail with a sentence saying what
to do when the installed uvicorn is outside the pin or the private surface has moved.
"""

from __future__ import annotations

import asyncio
import inspect
import tomllib
from pathlib import Path

import uvicorn
from packaging.requirements import Requirement
from packaging.version import Version
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from core import http_guard

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
# the methods GuardedHttpProtocol overrides and calls through super(), with their parameters
OVERRIDDEN = {
    "connection_made": ["self", "transport"],
    "connection_lost": ["self", "exc"],
    "data_received": ["self", "data"],
    "send_400_response": ["self", "msg"],
    "on_message_begin": ["self"],
    "on_url": ["self", "url"],
    "on_header": ["self", "name", "value"],
    "on_headers_complete": ["self"],
    "on_message_complete": ["self"],
}
# the instance attributes it reads
ATTRIBUTES = ("loop", "connections", "cycle", "transport")
FIX = (
    "re-check core/http_guard.py (GuardedHttpProtocol) and governance's CoalescingHttpProtocol against "
    "uvicorn/protocols/http/httptools_impl.py, run tests/test_service_bad_input.py, then move the pin"
)


def _uvicorn_requirement() -> Requirement:
    dependencies = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    return next(Requirement(d) for d in dependencies if Requirement(d).name == "uvicorn")


def test_installed_uvicorn_is_inside_the_pin() -> None:
    requirement = _uvicorn_requirement()
    installed = Version(uvicorn.__version__)
    assert requirement.specifier.contains(installed), (
        f"uvicorn {installed} is installed but pyproject.toml pins '{requirement}': {FIX}"
    )
    bounds = {spec.operator for spec in requirement.specifier}
    assert "<" in bounds and (">=" in bounds or "==" in bounds), (
        f"pyproject.toml must pin uvicorn to one minor release (e.g. '>=0.55,<0.56'), not '{requirement}': "
        "core.http_guard subclasses a private uvicorn class"
    )


def test_private_protocol_surface_is_what_the_guard_overrides() -> None:
    moved = []
    for name, parameters in OVERRIDDEN.items():
        method = getattr(HttpToolsProtocol, name, None)
        if method is None:
            moved.append(f"{name}() is gone")
        elif list(inspect.signature(method).parameters) != parameters:
            moved.append(f"{name}{inspect.signature(method)} no longer takes ({', '.join(parameters)})")
    loop = asyncio.new_event_loop()
    try:
        config = uvicorn.Config(app=lambda scope, receive, send: None, http="httptools")
        config.load()
        protocol = HttpToolsProtocol(config=config, server_state=ServerState(), app_state={}, _loop=loop)
        moved += [f"instances have no '{name}'" for name in ATTRIBUTES if not hasattr(protocol, name)]
    finally:
        loop.close()
    assert moved == [], (
        f"uvicorn {uvicorn.__version__} moved its private httptools protocol ({'; '.join(moved)}): {FIX}"
    )


def test_the_guard_is_built_on_that_class() -> None:
    """If the guard stops subclassing it, the pin and these checks can go (say so in pyproject.toml)."""
    assert issubclass(http_guard.GuardedHttpProtocol, HttpToolsProtocol)
    assert issubclass(http_guard.guarded_protocol(max_connections=3), http_guard.GuardedHttpProtocol)
