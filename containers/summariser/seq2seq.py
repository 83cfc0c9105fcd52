"""The abstractive path: a provider-supplied encoder-decoder model folder (T5, BART, ...).

No such model ships offline, so this path runs only on a folder the provider brings (as a
decrypted mount); its output is free text, which is why the caps are applied after generation
rather than trusted to ``max_new_tokens``. A T5 folder's ``task_specific_params.summarization.
prefix`` ("summarize: ") is honoured because T5 was trained to expect it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from containers.summariser.sentences import split_sentences
from containers.trainer.model_files import refuse_pickle

METHOD = "seq2seq"
MAX_INPUT_TOKENS = 512
MAX_NEW_TOKENS = 128


class Seq2SeqFolderError(ValueError):
    """The seq2seq model folder is missing or unusable."""


class Seq2SeqSummariser:
    method = METHOD

    def __init__(self, folder: Path, *, threads: int | None = None, max_new_tokens: int = MAX_NEW_TOKENS) -> None:
        import torch
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        if not (folder / "config.json").is_file():
            raise Seq2SeqFolderError(f"seq2seq model folder '{folder}' has no config.json; pass --model-dir DIR")
        refuse_pickle(folder)
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.folder = folder
        self.max_new_tokens = max_new_tokens
        self.tokenizer: Any = AutoTokenizer.from_pretrained(folder)
        self.model: Any = AutoModelForSeq2SeqLM.from_pretrained(folder, use_safetensors=True).eval()
        params = getattr(self.model.config, "task_specific_params", None) or {}
        self.prefix = str(params.get("summarization", {}).get("prefix", ""))

    def draft(self, document: str, _sentences: list[str], *, max_sentences: int, max_chars: int) -> list[str]:
        batch = self.tokenizer(
            [self.prefix + document], truncation=True, max_length=MAX_INPUT_TOKENS, return_tensors="pt"
        )
        with self._torch.inference_mode():
            generated = self.model.generate(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                max_new_tokens=self.max_new_tokens,
                num_beams=1,
                do_sample=False,
            )
        text = self.tokenizer.decode(generated[0], skip_special_tokens=True)
        return split_sentences(text)
