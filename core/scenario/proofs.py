"""The proofs a scenario ends with: isolation attempts that must be refused, the ledger
verified offline by every party, and what each clean room reported.

Each isolation check is an attack a party could really mount with what it holds: a
well-formed attestation signed by a key of its own, its own DEKs against another party's
sealed blobs, and (the hoster, whose machine holds every store and mount) a scan for plaintext.
A check passes only when the attempt is refused with the error that names the refusal.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config.party import party_fragment
from core.crypto.kek import dek_for
from core.errors import AccessDeniedError, CleanroomError, ConflictError, IntegrityError, InvalidInputError
from core.scenario.steps import Reporter, Step

if TYPE_CHECKING:
    from core.scenario.run import Scenario

# What each isolation check attempts (the console and the demo's table group checks by these).
KIND_SECRET = "wrapped DEK from governance with a self-made attestation"
KIND_RELEASE = "KEK release from the key service with a self-made attestation"
KIND_DECRYPT = "decrypt another party's blobs with its own DEKs"
KIND_STORES = "find plaintext in any blob store on the hoster's machine"
KIND_MOUNTS = "find a decrypted mount left after the runs"
DATA_OWNERS = ("provider", "consumer")  # the parties whose assets the others try to reach
# `--attempt NAME` of the narrated proof lines (`python -m core.scenario isolation ...`), by kind
ATTEMPTS = {
    "secret": KIND_SECRET,
    "release": KIND_RELEASE,
    "decrypt": KIND_DECRYPT,
    "stores": KIND_STORES,
    "mounts": KIND_MOUNTS,
}


def _forged_attestation(contract_id: str, policy: str | None) -> str:
    """What a party without the clean room's attestation key can produce: a well-formed token
    with the right claims, signed by a key of its own."""
    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec

    now = int(time.time())
    claims = {
        "iss": "cleanroom-virtual-attestation",
        "iat": now,
        "nbf": now - 5,
        "exp": now + 300,
        "attestation_type": "virtual",
        "contract_id": contract_id,
        "policy_hash": policy or "",
        "report_data": "00" * 32,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, ec.generate_private_key(ec.SECP384R1()), algorithm="ES384")


def _check(
    checks: list[dict[str, Any]],
    persona: str,
    kind: str,
    name: str,
    attempt: Callable[[], Any],
    refused: tuple[type[CleanroomError], ...],
) -> None:
    """Run ``attempt``; the check passes only if it is refused with one of ``refused``."""
    record = {"persona": persona, "kind": kind, "check": name}
    try:
        attempt()
    except refused as exc:
        checks.append(record | {"passed": True, "detail": f"refused: {exc.one_line()[:160]}"})
        return
    except CleanroomError as exc:
        checks.append(record | {"passed": False, "detail": f"unexpected {type(exc).__name__}: {exc.one_line()[:160]}"})
        return
    checks.append(record | {"passed": False, "detail": "it succeeded"})


def _contract_assets(scenario: Scenario, owner_persona: str) -> list[tuple[str, dict[str, Any]]]:
    """(contract id, asset) for every datasource/datasink ``owner_persona`` put in a contract."""
    engine = scenario.engine(owner_persona)
    found = []
    for contract_id in scenario.definition.contracts:
        data = engine.contract(contract_id).document
        for asset in data.get("datasources", []) + data.get("datasinks", []):
            if asset["owner"] == engine.member_id:
                found.append((contract_id, asset))
    return found


def _try_decrypt(scenario: Scenario, persona: str, asset: dict[str, Any]) -> None:
    """Read another party's sealed blobs straight from its store (the store spec is public in the
    contract) and try every DEK this persona holds; success would be a leak."""
    from core.config.fragment import DataAsset
    from core.storage.locator import open_store
    from core.storage.transfer import download_folder

    workspace = scenario.workspace(persona)
    fragment = party_fragment(workspace)
    names = [a.name for a in fragment.datasources + fragment.datasinks]
    spec = DataAsset.model_validate(asset)
    store = open_store(spec.store)
    if not names:
        raise AccessDeniedError(f"{persona} holds no DEK at all to try on '{spec.name}'")
    with tempfile.TemporaryDirectory(prefix="cleanroom-proof-") as tmp:
        for name in names:
            target = Path(tmp) / name
            try:
                download_folder(
                    store,
                    spec.container,
                    dek_for(workspace.keys_dir, name),
                    target,
                    label=f"{spec.owner[:8]}'s '{spec.name}' with {persona}'s DEK '{name}'",
                )
            except IntegrityError:
                if target.exists() and any(p.is_file() for p in target.rglob("*")):
                    raise ConflictError(
                        f"plaintext was written while decrypting '{spec.name}' with a wrong key"
                    ) from None
                continue
            raise ConflictError(f"{persona}'s DEK '{name}' opened '{spec.name}'")
        raise IntegrityError(f"none of {persona}'s {len(names)} DEKs opens '{spec.name}'")


def isolation(persona: str) -> Callable[[Scenario, Step, Reporter], str]:
    """The body of ``isolation:<persona>``: the attempts its narrated lines name
    (``python -m core.scenario isolation --persona P --attempt NAME``), each on every asset of
    the other parties."""

    def perform(scenario: Scenario, step: Step, reporter: Reporter) -> str:
        attempts = [invocation.value("--attempt") for invocation in step.invocations]
        checks = isolation_checks(scenario, persona, attempts)
        kept = [c for c in scenario.state.results.get("isolation_checks", []) if c["persona"] != persona]
        scenario.state.results["isolation_checks"] = kept + checks
        for kind in dict.fromkeys(c["kind"] for c in checks):
            group = [c for c in checks if c["kind"] == kind]
            reporter.note(f"{persona} tries to {kind}: {sum(c['passed'] for c in group)}/{len(group)} refused")
        for check in checks:
            if not check["passed"]:
                reporter.note(f"LEAK {persona}: {check['check']} ({check['detail']})")
        passed = sum(c["passed"] for c in checks)
        return f"{passed}/{len(checks)} isolation checks passed"

    return perform


def isolation_checks(scenario: Scenario, persona: str, attempts: Collection[str]) -> list[dict[str, Any]]:
    """What ``persona`` tries (``attempts``: names of ``ATTEMPTS``) and whether each was refused;
    ``stores`` and ``mounts`` are the hoster's, whose machine holds every store and mount."""
    unknown = sorted(set(attempts) - set(ATTEMPTS))
    if unknown or (persona != "hoster" and {"stores", "mounts"} & set(attempts)):
        raise InvalidInputError(
            f"{persona} cannot attempt {', '.join(unknown) or 'stores/mounts'}",
            hint=f"attempts: {', '.join(ATTEMPTS)} (stores and mounts: the hoster only)",
        )
    wanted = set(attempts)
    checks: list[dict[str, Any]] = []
    engine = scenario.engine(persona)
    for owner in [p for p in DATA_OWNERS if p != persona]:
        assets = _contract_assets(scenario, owner)
        for contract_id, asset in assets:
            secret = f"dek-{asset['name']}"
            policy = engine.accepted_policy_hash(contract_id)

            def get_secret(c: str = contract_id, s: str = secret, p: str | None = policy) -> None:
                engine.request_secret(c, s, _forged_attestation(c, p))

            def decrypt(a: dict[str, Any] = asset) -> None:
                _try_decrypt(scenario, persona, a)

            if "secret" in wanted:
                _check(
                    checks,
                    persona,
                    KIND_SECRET,
                    f"cannot get {owner}'s wrapped DEK '{secret}' of '{contract_id}' "
                    "from governance with a self-made attestation",
                    get_secret,
                    (AccessDeniedError,),
                )
            if "decrypt" in wanted:
                _check(
                    checks,
                    persona,
                    KIND_DECRYPT,
                    f"cannot decrypt {owner}'s '{asset['name']}' blobs with its own DEKs",
                    decrypt,
                    (IntegrityError, AccessDeniedError),
                )
        if "release" not in wanted:
            continue
        owner_id = scenario.engine(owner).member_id
        for contract_id in sorted({c for c, _ in assets}):
            policy = engine.accepted_policy_hash(contract_id)

            def release(c: str = contract_id, p: str | None = policy, owner_id: str = owner_id) -> None:
                from core.keys.release import WorkloadKey

                keys = scenario.key_service()
                try:
                    keys.release(owner_id, c, attestation=_forged_attestation(c, p), workload_key=WorkloadKey())
                finally:
                    keys.close()

            _check(
                checks,
                persona,
                KIND_RELEASE,
                f"key service refuses to release {owner}'s KEK of '{contract_id}' to a self-made attestation",
                release,
                (AccessDeniedError,),
            )
    if "stores" in wanted:
        checks.append(_stores_hold_no_plaintext(scenario))
    if "mounts" in wanted:
        checks.append(_no_plaintext_mounts(scenario))
    return checks


def _stores_hold_no_plaintext(scenario: Scenario) -> dict[str, Any]:
    """The hoster can read every blob byte on its machine; none of it may be plaintext."""
    needles = {
        "a training sentence": _first_training_text(scenario).encode()[:48],
        "the model config": b'"num_attention_heads"',
        "the training config": b'"learning_rate"',
    }
    found = []
    scanned = 0
    for persona in scenario.personas:
        for path in scenario.workspace(persona).store_dir.rglob("*"):
            if not path.is_file():
                continue
            data = path.read_bytes()
            scanned += len(data)
            found += [f"{what} in {path.name}" for what, needle in needles.items() if needle in data]
    return {
        "persona": "hoster",
        "kind": KIND_STORES,
        "check": f"no plaintext in any party's blob store ({scanned / 1e6:.0f} MB scanned)",
        "passed": not found,
        "detail": "; ".join(found) or "only ciphertext",
    }


def _first_training_text(scenario: Scenario) -> str:
    import pyarrow.parquet as pq

    table = pq.read_table(scenario.workspace_dir("consumer") / "data" / "training" / "train.parquet")
    return str(max(table.column("text").to_pylist()[:50], key=len))


def _no_plaintext_mounts(scenario: Scenario) -> dict[str, Any]:
    from core.runtime.local import MOUNTS_DIR

    mounts = scenario.runtime_environment().runtime_state_dir / MOUNTS_DIR
    left = [p.name for p in mounts.iterdir()] if mounts.is_dir() else []
    return {
        "persona": "hoster",
        "kind": KIND_MOUNTS,
        "check": "no decrypted mount left on the hoster's machine after the runs",
        "passed": not left,
        "detail": ", ".join(left) or f"{mounts} is empty",
    }


def verify_ledger(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`ledger export` + `ledger verify --full` by each party the step's invocations name."""
    verified = {}
    entries = 0
    for invocation in step.invocations_of("governance", "ledger", "verify"):
        persona = invocation.persona or ""
        report = scenario.engine(persona).verify_ledger()
        verified[persona] = "ok" if report.ok else report.detail
        if report.ok:
            entries = report.entries
            scenario.state.results["ledger"] = {
                "entries": report.entries,
                "checkpoints": report.checkpoints,
                "member_signatures_checked": report.member_signatures_checked,
            }
    ok = all(v == "ok" for v in verified.values())
    scenario.state.results.setdefault("ledger", {}).update({"verified": ok, "by_persona": verified})
    if not ok:
        raise IntegrityError(f"ledger verification failed: {verified}", hint="the ledger export was tampered with")
    return f"each party verified {entries} entries offline (hash chain, signed checkpoints, member signatures)"


def count_events(scenario: Scenario, step: Step, reporter: Reporter) -> str:
    """`event list --id C` for each contract the step names: the events counted by kind, and
    each contract's state and hash recorded."""
    counts: dict[str, dict[str, int]] = {}
    contracts = []
    for invocation in step.invocations_of("governance", "contract", "event", "list"):
        contract_id = invocation.value("--id")
        engine = scenario.engine(invocation.persona or "")
        counts[contract_id] = dict(sorted(Counter(e.kind for e in engine.all_events(contract_id)).items()))
        contract = next(c for c in engine.contracts() if c.contract_id == contract_id)
        contracts.append({"id": contract_id, "state": contract.state, "hash": contract.contract_hash})
    scenario.state.results["event_counts"] = counts
    scenario.state.results["contracts"] = contracts
    return "; ".join(f"{c}: {sum(v.values())} events" for c, v in counts.items())
