"""How a model version's status reads on screen: one icon per status of the registry's machine
(core.governance.model_registry.ModelStatus), shared by `cleanroom model` and the console's Models view."""

from __future__ import annotations

STATUS_ICONS = {
    "created": "○",
    "downloaded": "↓",
    "scanning": "⋯",
    "vulnerable": "✘",
    "environmentCreated": "⚙",
    "deployed": "▶",
    "verified": "✔",
    "verifyFailed": "✘",
    "toBeRetried": "↻",
}
FINAL_BAD = frozenset({"vulnerable", "verifyFailed"})


def status_label(status: str) -> str:
    return f"{STATUS_ICONS.get(status, '?')} {status}"


def details_line(details: dict[str, object]) -> str:
    """A status's details on one line: the reason or findings first (why it failed), then the rest."""
    if isinstance(details.get("reason"), str):
        return str(details["reason"])
    findings = details.get("findings")
    if isinstance(findings, list) and findings:
        more = f" (+{len(findings) - 1} more)" if len(findings) > 1 else ""
        return f"{findings[0]}{more}"
    return ", ".join(f"{key}={value}" for key, value in details.items() if not isinstance(value, dict | list))
