"""The mean-pooled classifier the private trainer uses by default (containers/trainer/mean_pooling.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from containers.dp_trainer.job import PrivacyConfigError, parse_job  # noqa: E402
from containers.trainer.mean_pooling import MODEL_TYPE, from_bert_classifier  # noqa: E402


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bert")
    config = transformers.BertConfig(
        vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, num_labels=2
    )
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def test_padding_does_not_change_a_rows_logits(bert_dir: Path) -> None:
    """The mean is over the real tokens only: a row padded into a longer batch classifies the same."""
    model = from_bert_classifier(bert_dir).eval()
    ids = torch.tensor([[2, 5, 6, 0, 0], [2, 7, 8, 9, 3]])
    mask = (ids != 0).long()
    with torch.no_grad():
        batched = model(input_ids=ids, attention_mask=mask).logits
        alone = model(input_ids=ids[:1, :3], attention_mask=mask[:1, :3]).logits
    assert torch.allclose(batched[0], alone[0], atol=1e-5)


def test_the_head_sees_the_mean_not_the_cls_state(bert_dir: Path) -> None:
    """Changing a non-[CLS] token changes the logits through the mean (the encoder has one layer,
    so with [CLS] pooling the change would reach the head only through attention)."""
    model = from_bert_classifier(bert_dir).eval()
    hidden = model.bert(input_ids=torch.tensor([[2, 5, 6]])).last_hidden_state
    with torch.no_grad():
        expected = model.classifier(hidden.mean(dim=1))
        logits = model(input_ids=torch.tensor([[2, 5, 6]])).logits
    assert torch.allclose(logits, expected, atol=1e-5)
    assert not hasattr(model.bert, "pooler") or model.bert.pooler is None


def test_a_saved_mean_pooled_classifier_loads_as_itself(bert_dir: Path, tmp_path: Path) -> None:
    """Its own model_type: a loader cannot silently take it for a [CLS] classifier."""
    model = from_bert_classifier(bert_dir).eval()
    model.save_pretrained(tmp_path / "saved")
    loaded = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved").eval()
    assert loaded.config.model_type == MODEL_TYPE
    ids = torch.tensor([[2, 5, 6, 7]])
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-6)


def _job(**override: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "epsilon": 8.0,
        "delta": 1e-5,
        "batch_size": 64,
        "join": {
            "key": "person_id",
            "sources": [{"datasource": "t", "file": "a.parquet", "columns": ["person_id", "text"], "how": "base"}],
            "min_rows": 100,
            "max_rows_per_key": 1,
        },
        "mounts": {"t": "/nonexistent"},
    }
    return job | override


def test_pooling_defaults_to_mean_and_an_unknown_one_is_refused() -> None:
    assert parse_job(_job()).pooling == "mean"
    assert parse_job(_job(pooling="cls")).pooling == "cls"
    with pytest.raises(PrivacyConfigError, match="pooling 'max' is unknown; use mean or cls"):
        parse_job(_job(pooling="max"))
