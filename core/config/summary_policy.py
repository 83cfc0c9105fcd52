"""The voted output policy of a summarisation application: what may leave the clean room per document.

The party whose documents are summarised votes caps on what the other party receives:
``max_sentences`` and ``max_ratio`` (summary characters / document characters) bound how much
of each document a summary can carry, and ``max_document_bytes`` bounds what the workload will
take in at all (a huge document would otherwise make a small ratio a large release). The
workload (``containers.summariser``) enforces the caps itself after generation and re-checks
every summary; it cannot import ``core``, so it mirrors these bounds by hand and the tests keep
the two in step. The runtime hands the policy over as JSON in ``CLEANROOM_SUMMARY_POLICY``.
"""

from __future__ import annotations

import json

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import InvalidInputError

SUMMARY_POLICY_ENV = "CLEANROOM_SUMMARY_POLICY"
MAX_SENTENCES_LIMIT = 50
MAX_DOCUMENT_BYTES_LIMIT = 64 * 1024 * 1024  # the workload reads one document at a time into memory


class SummaryPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    max_sentences: int = Field(ge=1, le=MAX_SENTENCES_LIMIT)
    max_ratio: float = Field(gt=0, le=1, allow_inf_nan=False)
    max_document_bytes: int = Field(ge=1, le=MAX_DOCUMENT_BYTES_LIMIT)

    def to_env(self) -> dict[str, str]:
        """The environment entry the workload reads its caps from."""
        return {SUMMARY_POLICY_ENV: json.dumps(self.model_dump(), sort_keys=True, separators=(",", ":"))}


def parse_summary_policy(text: str, where: str) -> SummaryPolicy:
    """The policy from JSON ``text`` (a file or a proposal body), refused in one line naming the field."""
    try:
        return SummaryPolicy.model_validate_json(text)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "policy"
        raise InvalidInputError(
            f"summary policy in {where}: {field}: {error['msg']}",
            hint="give max_sentences (1-50), max_ratio (above 0, at most 1) and max_document_bytes (1-64 MiB)",
        ) from None
