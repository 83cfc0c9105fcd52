"""The voted output policy as the workload reads it (``--policy FILE`` or ``$CLEANROOM_SUMMARY_POLICY``).

The image ships without ``core``, so the contract-side model (``core.config.summary_policy``)
is mirrored here by hand with the same bounds: a policy governance accepted must load, and one it
would refuse must not, even if someone starts the workload with a hand-written file.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

POLICY_ENV = "CLEANROOM_SUMMARY_POLICY"
MAX_SENTENCES_LIMIT = 50
MAX_DOCUMENT_BYTES_LIMIT = 64 * 1024 * 1024
FIELDS = ("max_sentences", "max_ratio", "max_document_bytes")


class PolicyError(ValueError):
    """The output policy is missing or outside its bounds."""


@dataclass(frozen=True)
class SummaryPolicy:
    max_sentences: int
    max_ratio: float
    max_document_bytes: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_policy(document: Any, where: str) -> SummaryPolicy:
    if not isinstance(document, dict):
        raise PolicyError(f"summary policy in {where} must be a JSON object with {', '.join(FIELDS)}")
    unknown = sorted(set(document) - set(FIELDS))
    missing = [name for name in FIELDS if name not in document]
    if unknown or missing:
        raise PolicyError(
            f"summary policy in {where} has unknown field(s) {unknown} or lacks {missing}; "
            f"give exactly {', '.join(FIELDS)}"
        )
    sentences, ratio, size = (document[name] for name in FIELDS)
    if isinstance(sentences, bool) or not isinstance(sentences, int) or not 1 <= sentences <= MAX_SENTENCES_LIMIT:
        raise PolicyError(f"max_sentences={sentences!r} in {where} must be an integer from 1 to {MAX_SENTENCES_LIMIT}")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not math.isfinite(ratio) or not 0 < ratio <= 1:
        raise PolicyError(f"max_ratio={ratio!r} in {where} must be a number above 0 and at most 1")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_DOCUMENT_BYTES_LIMIT:
        raise PolicyError(
            f"max_document_bytes={size!r} in {where} must be an integer from 1 to {MAX_DOCUMENT_BYTES_LIMIT}"
        )
    return SummaryPolicy(max_sentences=sentences, max_ratio=float(ratio), max_document_bytes=size)


def load_policy(path: Path | None) -> SummaryPolicy:
    """The policy from ``path``, else from ``$CLEANROOM_SUMMARY_POLICY`` (JSON), else refused: no default caps."""
    if path is not None:
        try:
            text, where = path.read_text(encoding="utf-8"), str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"cannot read summary policy file '{path}' ({exc}); pass a readable JSON file") from None
    elif os.environ.get(POLICY_ENV):
        text, where = os.environ[POLICY_ENV], f"${POLICY_ENV}"
    else:
        raise PolicyError(f"no summary policy: pass --policy FILE or set {POLICY_ENV} to the voted policy's JSON")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PolicyError(f"summary policy in {where} is not valid JSON ({exc}); fix the file") from None
    return parse_policy(document, where)
