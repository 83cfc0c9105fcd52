"""The voted caps, applied to every draft after generation (``max_sentences``, ``max_ratio``, ``max_document_bytes``).

Whatever a method drafts (an extractive pick or a seq2seq model's free text), what leaves the
clean room is cut here: the last sentences are dropped, and a single sentence still over the
character budget is cut at a word boundary. The result is re-split with the same splitter the
caps are counted with, so the count a reader would make never exceeds the voted one. An
over-size document is refused before any method sees it, and its refusal names only its id and
size, never its content.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from containers.summariser.policy import SummaryPolicy
from containers.summariser.sentences import split_sentences


@dataclass(frozen=True)
class CappedSummary:
    text: str
    sentences: int
    truncated: bool


def char_budget(policy: SummaryPolicy, document: str) -> int:
    return math.floor(policy.max_ratio * len(document))


def oversize_reason(policy: SummaryPolicy, size: int) -> str | None:
    """Why a document of ``size`` UTF-8 bytes is refused, or None when it is within the cap."""
    if size > policy.max_document_bytes:
        return (
            f"document is {size} bytes, over the voted max_document_bytes of {policy.max_document_bytes}; "
            "split it or vote a larger cap"
        )
    return None


def _cut_at_word(sentence: str, budget: int) -> str:
    if len(sentence) <= budget:
        return sentence
    cut = sentence[:budget]
    space = cut.rfind(" ")
    return (cut[:space] if space > 0 else cut).rstrip()


def enforce_caps(policy: SummaryPolicy, document: str, draft: list[str]) -> CappedSummary:
    budget = char_budget(policy, document)
    pieces = [piece.strip() for piece in draft if piece.strip()]
    truncated = len(pieces) > policy.max_sentences
    pieces = pieces[: policy.max_sentences]
    while pieces and len(" ".join(pieces)) > budget:
        truncated = True
        if len(pieces) > 1:
            pieces.pop()
        else:
            pieces = [cut] if (cut := _cut_at_word(pieces[0], budget)) else []
    text = " ".join(pieces)
    counted = split_sentences(text)
    while len(counted) > policy.max_sentences:  # joined pieces may re-split differently than drafted
        truncated = True
        counted.pop()
        text = " ".join(counted)
        counted = split_sentences(text)
    return CappedSummary(text=text, sentences=len(counted), truncated=truncated)


def within_caps(policy: SummaryPolicy, document: str, summary: str) -> bool:
    """The check the report's ``caps_respected`` and the benchmark make on what actually left."""
    return len(split_sentences(summary)) <= policy.max_sentences and len(summary) <= char_budget(policy, document)
