"""A model version's regression result: both versions' scores side by side, and the gate's word.

The regression workload compares the version in service (baseline) and this one (candidate) on
a consumer's cases inside the clean room, and only the aggregate leaves: per metric the two
scores and their delta, the flips (cases one version gets right and the other wrong, and label
changes), McNemar's exact p on those flips, and the voted gate with its verdict, which decides
whether the version may be published at all. So the table is metric rows x (baseline,
candidate, delta), then flips and p, then the gate's rules and, when it failed, each reason.
The document is the workload's aggregate as governance holds it on the candidate version
(``containers/regression``'s report, in either key spelling, see ``report_fields``); a part
that is missing prints "—", and a document that is not one at all says so.
"""

from __future__ import annotations

from textual.content import Content

from tui.widgets.report_fields import MISSING, count, field, flag, number, section, shown, text

METRICS = (("accuracy", "accuracy"), ("macro_f1", "macro F1"), ("micro_f1", "micro F1"), ("weighted_f1", "weighted F1"))
NO_REGRESSION = "No regression result for this version: a regression clean room compares it with its baseline."
HASH_CHARS = 12


def regression_lines(document: object) -> Content:
    """The regression table of a version view's ``regression`` field (None: not run yet)."""
    if document is None:
        return Content.styled(NO_REGRESSION, "$text-muted")
    if not isinstance(document, dict):
        return Content.styled(f"regression: {MISSING} (the recorded result is not a JSON object)", "$warning")
    baseline, candidate = section(document, "baseline"), section(document, "candidate")
    if not baseline and not candidate:
        return Content.styled(
            f"regression: {MISSING} (the recorded result has no baseline or candidate scores)", "$warning"
        )
    cases = count(document, "cases")
    contract = text(document, "contract_id")
    lines = [
        Content.assemble(
            Content.styled(f"regression over {MISSING if cases is None else cases} cases", "bold"),
            Content.styled(f" · contract {contract}" if contract else "", "$text-muted"),
        ),
        Content.styled(_versions(document), "$text-muted"),
        Content.styled(f"{'metric':<12}{'baseline':>10}{'candidate':>11}{'delta':>10}", "$text-muted"),
    ]
    for key, label in METRICS:
        old, new = number(baseline, key), number(candidate, key)
        delta = None if old is None or new is None else new - old
        style = "" if delta is None or delta == 0 else "$success" if delta > 0 else "$error"
        lines.append(
            Content.assemble(
                f"{label:<12}{shown(old, '.4f'):>10}{shown(new, '.4f'):>11}",
                Content.styled(f"{shown(delta, '+.4f'):>10}", style),
            )
        )
    lines.append(_flips(section(document, "flips")))
    p = number(document, "mcnemar_p")
    lines.append(Content(f"McNemar exact p {MISSING if p is None else format(p, '.3g')}"))
    lines.extend(_gate(document))
    return Content("\n").join(lines)


def _versions(document: dict[str, object]) -> str:
    """Which bytes were compared: the registry's copy names the baseline version and both package
    hashes; the workload's sealed report names both model files' SHA-256."""
    models = section(document, "models")
    parts = []
    baseline_version = text(document, "baseline_version")
    for side in ("candidate", "baseline"):
        digest = text(document, f"{side}_package_hash") or text(section(models, side), "model_sha256")
        name = f"baseline {baseline_version}" if side == "baseline" and baseline_version else side
        if digest:
            parts.append(f"{name} {digest[:HASH_CHARS]}…")
    return " vs ".join(parts) or f"versions compared: {MISSING}"


def _flips(flips: dict[str, object]) -> Content:
    regressed, fixed = count(flips, "baseline_right_candidate_wrong"), count(flips, "baseline_wrong_candidate_right")
    labels = field(flips, "labels")
    changes = (
        ", ".join(f"{change}: {moved}" for change, moved in labels.items()) or "no label changed"
        if isinstance(labels, dict)
        else MISSING
    )
    return Content.assemble(
        "flips: ",
        Content.styled(f"{MISSING if regressed is None else regressed} regressed", "$error" if regressed else ""),
        f" (baseline right, candidate wrong), {MISSING if fixed is None else fixed} fixed; labels {changes}",
    )


def _gate(document: dict[str, object]) -> list[Content]:
    """The voted rules and the verdict; ``passed`` (what governance's publish check reads) wins
    over the workload's own ``verdict.passed`` when both are there."""
    gate, verdict = field(document, "gate"), section(document, "verdict")
    passed = flag(document, "passed")
    if passed is None:
        passed = flag(verdict, "passed")
    if isinstance(gate, dict) and gate:
        rules = ", ".join(f"{key} {_operator(key)} {value}" for key, value in gate.items())
    else:
        rules = "none voted"
    if passed is None:
        word = Content(MISSING)
    else:
        word = Content.styled("✔ passed", "bold $success") if passed else Content.styled("✘ FAILED", "bold $error")
    lines = [Content.assemble("gate: ", rules, "  ", word)]
    reasons = field(verdict, "reasons")
    if not passed and isinstance(reasons, list):
        lines.extend(Content.styled(f"    {reason}", "$error") for reason in reasons if isinstance(reason, str))
    return lines


def _operator(rule: str) -> str:
    """min_* rules are floors, max_* ceilings (in either spelling: min_accuracy, minAccuracy)."""
    return "≥" if rule.startswith("min") else "≤" if rule.startswith("max") else "="
