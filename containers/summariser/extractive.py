"""Extractive selection: sentences near the document's centroid, with a redundancy penalty (MMR).

The centroid of a document's sentence embeddings stands for what the document is about; each
pick maximises ``lambda * similarity to the centroid - (1 - lambda) * similarity to a sentence
already picked`` (maximal marginal relevance), so two paraphrases of the main point do not fill
the budget. Candidates that would overrun the character budget are skipped, not cut, and the
picks are returned in document order so the summary reads as the document does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from containers.summariser.encoder import SentenceEncoder

METHOD = "extractive-centroid-minilm"
MMR_LAMBDA = 0.7


def select_sentences(
    embeddings: np.ndarray, lengths: Sequence[int], *, max_sentences: int, max_chars: int
) -> list[int]:
    """Indices of the chosen sentences in document order (joined with one space, within ``max_chars``)."""
    count = len(lengths)
    if count == 0:
        return []
    centroid = embeddings.mean(axis=0)
    norm = float(np.linalg.norm(centroid))
    relevance = embeddings @ (centroid / norm) if norm > 0 else np.zeros(count)
    similarity = embeddings @ embeddings.T
    chosen: list[int] = []
    used = 0
    candidates = set(range(count))
    while candidates and len(chosen) < max_sentences:

        def score(index: int) -> float:
            redundancy = max((float(similarity[index, j]) for j in chosen), default=0.0)
            return MMR_LAMBDA * float(relevance[index]) - (1 - MMR_LAMBDA) * redundancy

        best = max(sorted(candidates), key=score)
        candidates.discard(best)
        cost = lengths[best] + (1 if chosen else 0)
        if used + cost <= max_chars:
            chosen.append(best)
            used += cost
    return sorted(chosen)


class ExtractiveSummariser:
    method = METHOD

    def __init__(self, encoder: SentenceEncoder) -> None:
        self.encoder = encoder

    def draft(self, _document: str, sentences: list[str], *, max_sentences: int, max_chars: int) -> list[str]:
        if not sentences:
            return []
        picks = select_sentences(
            self.encoder.encode(sentences),
            [len(s) for s in sentences],
            max_sentences=max_sentences,
            max_chars=max_chars,
        )
        return [sentences[i] for i in picks]
