"""One document in, one capped summary (or one refusal) out: the step batch and serve modes share."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from containers.summariser.caps import char_budget, enforce_caps, oversize_reason
from containers.summariser.policy import SummaryPolicy
from containers.summariser.sentences import split_sentences


class Method(Protocol):
    method: str

    def draft(self, document: str, sentences: list[str], *, max_sentences: int, max_chars: int) -> list[str]: ...


@dataclass(frozen=True)
class Summary:
    id: str
    text: str
    sentences: int
    document_chars: int
    truncated: bool
    method: str

    def record(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "summary": self.text,
            "sentences": self.sentences,
            "chars": len(self.text),
            "document_chars": self.document_chars,
            "ratio": round(len(self.text) / self.document_chars, 4) if self.document_chars else 0.0,
            "truncated": self.truncated,
            "method": self.method,
        }


@dataclass(frozen=True)
class Refusal:
    """A document not summarised: its id and why, never any of its text."""

    id: str
    reason: str
    too_large: bool = False

    def record(self) -> dict[str, str]:
        return {"id": self.id, "refused": self.reason}


class DocumentSummariser:
    def __init__(self, method: Method, policy: SummaryPolicy) -> None:
        self.method = method
        self.policy = policy

    def summarise(self, document_id: str, text: str) -> Summary | Refusal:
        reason = oversize_reason(self.policy, len(text.encode("utf-8")))
        if reason:
            return Refusal(document_id, reason, too_large=True)
        if not text.strip():
            return Refusal(document_id, "document is empty; nothing to summarise")
        sentences = split_sentences(text)
        draft = self.method.draft(
            text, sentences, max_sentences=self.policy.max_sentences, max_chars=char_budget(self.policy, text)
        )
        capped = enforce_caps(self.policy, text, draft)
        return Summary(
            id=document_id,
            text=capped.text,
            sentences=capped.sentences,
            document_chars=len(text),
            truncated=capped.truncated,
            method=self.method.method,
        )
