"""Tiny randomly initialised BERT models and synthetic review data for the ML tests.

A 2-layer, 32-wide BERT with a WordPiece vocabulary built from the synthetic sentences trains
and exports in seconds on a shared 2-core machine, yet goes through exactly the same code paths
(tokenizer files, safetensors, ONNX export, quantisation, serving) as the real MiniLM.
"""

from __future__ import annotations

import random
from pathlib import Path

POSITIVE = ("good", "great", "lovely", "moving", "brilliant", "charming", "fun", "superb")
NEGATIVE = ("bad", "awful", "dull", "boring", "clumsy", "tedious", "weak", "messy")
FILLER = (
    "the",
    "film",
    "movie",
    "plot",
    "is",
    "was",
    "a",
    "really",
    "quite",
    "story",
    "and",
    "acting",
    "ending",
    "very",
    "it",
    "this",
    "script",
    "cast",
)
SPECIAL = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def synthetic_reviews(count: int, seed: int) -> tuple[list[str], list[int]]:
    """Sentences of varying length whose polarity is carried by one or two cue words."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(count):
        label = i % 2
        cues = POSITIVE if label else NEGATIVE
        words = [rng.choice(FILLER) for _ in range(rng.randint(3, 20))]
        for _ in range(rng.randint(1, 2)):
            words.insert(rng.randrange(len(words) + 1), rng.choice(cues))
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


def build_tiny_base(folder: Path, *, seed: int = 0) -> Path:
    """A safetensors BERT base (no classification head) plus its WordPiece tokenizer."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = (
        list(SPECIAL) + sorted(set(POSITIVE + NEGATIVE + FILLER)) + list("abcdefghijklmnopqrstuvwxyz.,!?'-0123456789")
    )
    vocab += [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"]
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=0,
    )
    BertModel(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def write_parquet_splits(folder: Path, sizes: dict[str, int], *, seed: int = 1) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    for offset, (split, count) in enumerate(sizes.items()):
        texts, labels = synthetic_reviews(count, seed + offset)
        pq.write_table(pa.table({"text": texts, "label": labels}), folder / f"{split}.parquet")
    return folder
