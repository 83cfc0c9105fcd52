"""Sentence boundaries by pySBD (rule-based, offline): abbreviations, decimals and initials do not end a sentence.

A regex on ``.`` would cut "Dr. Smith paid 3.5 m" in three; the extractive method picks whole
sentences and the caps count them, so both depend on the boundaries being right.
"""

from __future__ import annotations

import threading

import pysbd

_local = threading.local()  # a pysbd Segmenter keeps state while it segments: one per thread


def split_sentences(text: str) -> list[str]:
    """The sentences of ``text`` in order, stripped, empty pieces dropped."""
    segmenter = getattr(_local, "segmenter", None)
    if segmenter is None:
        segmenter = _local.segmenter = pysbd.Segmenter(language="en", clean=False)
    return [piece.strip() for piece in segmenter.segment(text) if piece.strip()]
