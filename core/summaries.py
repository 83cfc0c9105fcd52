"""A party's summaries: what a summariser sealed to its datasink, read back and re-checked, and
one document sent to a served summariser.

The receiving party (party I) gets summaries only. It re-checks every one against the caps its
contract voted, not against the caps the workload's report claims, and counts sentences with
the splitter the workload counts by: a summariser that overstepped the caps is caught by the
party that receives its output, not only by itself. The sink is decrypted into a private
temporary folder that is gone before the answer returns, so reading summaries leaves no
plaintext on disk.
"""

from __future__ import annotations

import json
import math
import ssl
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import AccessDeniedError, IntegrityError, InvalidInputError, NotFoundError, ServiceUnavailableError

if TYPE_CHECKING:
    from core.engine import PersonaEngine

SUMMARIES_FILE = "summaries.jsonl"
REPORT_FILE = "report.json"
SUMMARY_FILES = frozenset({SUMMARIES_FILE, REPORT_FILE})  # all a summariser may leave in its sink
POLICY_FIELDS = ("max_sentences", "max_ratio", "max_document_bytes")


@dataclass(frozen=True)
class SummarySink:
    """A datasink of this party that a summariser of the contract writes, with the caps voted on it."""

    datasink: str
    application: str
    policy: dict[str, Any]


@dataclass(frozen=True)
class ReceivedSummary:
    id: str
    summary: str
    sentences: int  # counted again by the receiving party
    chars: int
    document_chars: int
    method: str
    truncated: bool
    within_caps: bool

    @property
    def ratio(self) -> float:
        return round(self.chars / self.document_chars, 4) if self.document_chars else 0.0

    def against_caps(self, policy: dict[str, Any]) -> tuple[str, str, str, str]:
        """The row every front end shows: id, sentences / cap, ratio / cap, within caps."""
        return (
            self.id,
            f"{self.sentences}/{policy['max_sentences']}",
            f"{self.ratio:.2f} / {policy['max_ratio']}",
            "yes" if self.within_caps else "NO",
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "summary": self.summary,
            "sentences": self.sentences,
            "chars": self.chars,
            "documentChars": self.document_chars,
            "ratio": self.ratio,
            "method": self.method,
            "truncated": self.truncated,
            "withinCaps": self.within_caps,
        }


@dataclass(frozen=True)
class SummarySet:
    contract_id: str
    sink: SummarySink
    method: str
    summaries: tuple[ReceivedSummary, ...]
    refused: tuple[dict[str, str], ...]  # {"id", "refused"}: an id and a reason, never a document's text
    files: tuple[str, ...]

    @property
    def within_caps(self) -> bool:
        return all(summary.within_caps for summary in self.summaries)

    def as_dict(self) -> dict[str, Any]:
        return {
            "contractId": self.contract_id,
            "datasink": self.sink.datasink,
            "application": self.sink.application,
            "method": self.method,
            "policy": {
                "maxSentences": self.sink.policy["max_sentences"],
                "maxRatio": self.sink.policy["max_ratio"],
                "maxDocumentBytes": self.sink.policy["max_document_bytes"],
            },
            "summaries": [summary.as_dict() for summary in self.summaries],
            "refused": list(self.refused),
            "withinCaps": self.within_caps,
            "files": list(self.files),
        }


def summary_sinks(document: dict[str, Any], member_id: str) -> list[SummarySink]:
    """The datasinks ``member_id`` owns that a summariser of the contract ``document`` mounts."""
    mine = {sink["name"] for sink in document.get("datasinks", []) if sink.get("owner") == member_id}
    return [
        SummarySink(mount["source"], app["name"], dict(app["summary_policy"]))
        for app in document.get("applications", [])
        if app.get("summary_policy")
        for mount in app.get("mounts", [])
        if mount.get("source") in mine
    ]


def choose_sink(engine: PersonaEngine, contract_id: str, datasink: str | None) -> SummarySink:
    """The one summary sink of this party in the contract, or the one named ``datasink``."""
    sinks = summary_sinks(engine.contract(contract_id).document, engine.member_id)
    if datasink is not None:
        sinks = [sink for sink in sinks if sink.datasink == datasink]
    if not sinks:
        named = f"datasink '{datasink}'" if datasink else "no datasink"
        raise NotFoundError(
            f"contract '{contract_id}' has {named} of {engine.persona} that a summariser writes",
            hint="the summaries go to the datasink the summariser application mounts; check `governance contract show`",
        )
    if len(sinks) > 1:
        raise InvalidInputError(
            f"contract '{contract_id}' seals summaries to {len(sinks)} datasinks of {engine.persona}",
            hint=f"name one with --datasink ({', '.join(sink.datasink for sink in sinks)})",
        )
    return sinks[0]


def _counted_sentences(text: str) -> int:
    from containers.summariser.sentences import split_sentences

    return len(split_sentences(text))


def _received(record: dict[str, Any], policy: dict[str, Any], where: str) -> ReceivedSummary:
    try:
        text, document_chars = str(record["summary"]), int(record["document_chars"])
        received = ReceivedSummary(
            id=str(record["id"]),
            summary=text,
            sentences=_counted_sentences(text),
            chars=len(text),
            document_chars=document_chars,
            method=str(record["method"]),
            truncated=bool(record.get("truncated", False)),
            within_caps=False,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityError(
            f"{where} holds a summary line without {exc}", hint="the sink was not written by the summariser"
        ) from None
    within = received.sentences <= int(policy["max_sentences"]) and received.chars <= math.floor(
        float(policy["max_ratio"]) * document_chars
    )
    return replace(received, within_caps=within)


def read_summary_folder(folder: Path, contract_id: str, sink: SummarySink) -> SummarySet:
    """The summaries in a decrypted sink folder, each re-checked against the voted caps."""
    where = f"datasink '{sink.datasink}'"
    files = tuple(sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()))
    if SUMMARIES_FILE not in files or REPORT_FILE not in files:
        raise _not_yet(contract_id, sink)
    report = json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))
    claimed = {name: report.get("policy", {}).get(name) for name in POLICY_FIELDS}
    voted = {name: sink.policy[name] for name in POLICY_FIELDS}
    if claimed != voted:
        raise IntegrityError(
            f"{where} was written under caps {claimed}, not the voted {voted}",
            hint="do not use these summaries; the clean room did not run the voted policy",
        )
    lines = (folder / SUMMARIES_FILE).read_text(encoding="utf-8").splitlines()
    summaries = tuple(_received(json.loads(line), sink.policy, where) for line in lines if line.strip())
    refused = tuple({"id": str(r.get("id")), "refused": str(r.get("refused"))} for r in report.get("refusals", []))
    return SummarySet(contract_id, sink, str(report.get("method")), summaries, refused, files)


def read_summaries(engine: PersonaEngine, contract_id: str, *, datasink: str | None = None) -> SummarySet:
    """Download and decrypt this party's summary sink of the contract into a private temporary
    folder, read it, and remove the folder."""
    sink = choose_sink(engine, contract_id, datasink)
    with tempfile.TemporaryDirectory(prefix="cleanroom-summaries-") as tmp:
        folder = Path(tmp) / sink.datasink
        try:
            engine.download_asset("datasink", sink.datasink, folder, lambda done, total: None)
        except NotFoundError as exc:  # nothing sealed to the sink yet
            raise _not_yet(contract_id, sink) from exc
        return read_summary_folder(folder, contract_id, sink)


def _not_yet(contract_id: str, sink: SummarySink) -> NotFoundError:
    return NotFoundError(
        f"datasink '{sink.datasink}' of contract '{contract_id}' holds no summaries yet",
        hint=f"the hoster runs the summariser with `cleanroom deployment start --contract-id {contract_id}`",
    )


def send_document(engine: PersonaEngine, contract_id: str, text: str, document_id: str) -> dict[str, Any]:
    """`POST /summarize` through the contract's TLS ingress, pinned to its CA, with a bearer token
    governance issues to this member; the answer is the capped summary (never the document)."""
    import httpx

    endpoint = engine.ingress_endpoint(contract_id)
    ca_pem = engine.ca_certificate(contract_id)
    if not ca_pem:
        raise NotFoundError(
            f"contract '{contract_id}' has no CA certificate", hint="enable the CA by vote and generate its key"
        )
    token = engine.contract_token(contract_id)["token"]
    with tempfile.TemporaryDirectory(prefix="cleanroom-summarise-") as tmp:
        ca_path = Path(tmp) / "ca.pem"
        ca_path.write_text(ca_pem)
        verify = ssl.create_default_context(cafile=str(ca_path))
        try:
            response = httpx.post(
                f"{endpoint.rstrip('/')}/summarize",
                json={"id": document_id, "text": text},
                headers={"Authorization": f"Bearer {token}"},
                verify=verify,
                timeout=120.0,
            )
        except httpx.HTTPError as exc:
            raise ServiceUnavailableError(
                f"summariser of '{contract_id}' at {endpoint} is not reachable ({exc})",
                hint="check the clean room serves: `cleanroom deployment status`",
            ) from None
    if response.status_code in (401, 403):
        raise AccessDeniedError(
            f"summariser of '{contract_id}' refused the token ({response.status_code})",
            hint=f"a token is issued to members of '{contract_id}' only; check the workspace (-w)",
        )
    if response.status_code != 200:
        try:
            reason = str(response.json().get("error") or response.json().get("detail"))
        except ValueError:
            reason = response.text[:200]
        raise InvalidInputError(
            f"summariser of '{contract_id}' refused '{document_id}' ({response.status_code}): {reason}",
            hint="stay within the voted caps (max_document_bytes) and send UTF-8 text",
        )
    answer: dict[str, Any] = response.json()
    return answer


def received_summaries(engine: PersonaEngine) -> list[SummarySet]:
    """Every summary set sealed to this party: each accepted contract's summary sinks it owns
    that a run has written (a sink not written yet is skipped, not an error: the console asks
    before any run)."""
    from core.governance.models import ContractState

    found = []
    for contract in engine.contracts():
        if contract.state != ContractState.ACCEPTED:
            continue
        for sink in summary_sinks(engine.contract(contract.contract_id).document, engine.member_id):
            try:
                found.append(read_summaries(engine, contract.contract_id, datasink=sink.datasink))
            except NotFoundError:
                continue
    return found
