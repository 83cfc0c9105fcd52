"""The summarisation workload: sentence splitting, the voted caps, batch and serve modes, both methods.

The encoder is the tiny randomly initialised BERT of ``tests.ml_tiny_model`` (the real MiniLM is
exercised by ``benchmarks/summarisation.py``); the seq2seq model is a tiny random T5 built here.
Every refusal is checked for its message and for what it did not release.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from containers.summariser.__main__ import main as summariser_main
from containers.summariser.batch import run_batch
from containers.summariser.caps import char_budget, enforce_caps, within_caps
from containers.summariser.encoder import SentenceEncoder
from containers.summariser.extractive import METHOD, ExtractiveSummariser
from containers.summariser.policy import POLICY_ENV, PolicyError, SummaryPolicy, parse_policy
from containers.summariser.sentences import split_sentences
from containers.summariser.summarising import DocumentSummariser, Summary
from core.config.summary_policy import SummaryPolicy as VotedSummaryPolicy
from core.config.summary_policy import parse_summary_policy
from core.errors import InvalidInputError
from tests.ml_tiny_model import FILLER, NEGATIVE, POSITIVE, SPECIAL, build_tiny_base

ROOT = Path(__file__).resolve().parent.parent
POLICY = SummaryPolicy(max_sentences=2, max_ratio=0.5, max_document_bytes=4000)
SECRET = "zebracodeword"  # appears only in the over-size document


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_base(tmp_path_factory.mktemp("encoder") / "bert")


@pytest.fixture(scope="module")
def extractive(encoder_dir: Path) -> ExtractiveSummariser:
    return ExtractiveSummariser(SentenceEncoder(encoder_dir, threads=1))


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(FILLER + POSITIVE + NEGATIVE) for _ in range(rng.randint(2, 25))]
    tricky = rng.choice(["Dr. Smith", "3.5 percent", "the U.S. office", "e.g. this", "", "", "x" * rng.randint(1, 300)])
    words.insert(rng.randrange(len(words) + 1), tricky)
    return " ".join(w for w in words if w).capitalize() + rng.choice([".", ".", "!", "?"])


def _document(rng: random.Random, sentences: int) -> str:
    return rng.choice([" ", "\n", "\n\n"]).join(_sentence(rng) for _ in range(sentences))


def test_the_splitter_keeps_abbreviations_decimals_and_initials_inside_sentences() -> None:
    text = (
        "Dr. Smith paid $3.5 million to Acme Inc. on Jan. 5. The U.S. office agreed, e.g. in writing. "
        "It rose 2.75% in Q3! Why? Mr. J. R. Jones said so."
    )
    assert split_sentences(text) == [
        "Dr. Smith paid $3.5 million to Acme Inc. on Jan. 5.",
        "The U.S. office agreed, e.g. in writing.",
        "It rose 2.75% in Q3!",
        "Why?",
        "Mr. J. R. Jones said so.",
    ]


@pytest.mark.parametrize(
    ("document", "accepted"),
    [
        ({"max_sentences": 3, "max_ratio": 0.3, "max_document_bytes": 1000}, True),
        ({"max_sentences": 50, "max_ratio": 1, "max_document_bytes": 64 * 1024 * 1024}, True),
        ({"max_sentences": 0, "max_ratio": 0.3, "max_document_bytes": 1000}, False),
        ({"max_sentences": 51, "max_ratio": 0.3, "max_document_bytes": 1000}, False),
        ({"max_sentences": 3, "max_ratio": 0, "max_document_bytes": 1000}, False),
        ({"max_sentences": 3, "max_ratio": 1.01, "max_document_bytes": 1000}, False),
        ({"max_sentences": 3, "max_ratio": 0.3, "max_document_bytes": 64 * 1024 * 1024 + 1}, False),
        ({"max_sentences": True, "max_ratio": 0.3, "max_document_bytes": 1000}, False),
        ({"max_sentences": "3", "max_ratio": 0.3, "max_document_bytes": 1000}, False),
        ({"max_sentences": 3, "max_ratio": 0.3}, False),
        ({"max_sentences": 3, "max_ratio": 0.3, "max_document_bytes": 1000, "extra": 1}, False),
    ],
)
def test_the_workload_accepts_exactly_the_policies_governance_accepts(document: dict, accepted: bool) -> None:
    text = json.dumps(document)
    if accepted:
        voted = parse_summary_policy(text, "proposal")
        assert parse_policy(json.loads(voted.to_env()[POLICY_ENV]), "env").as_dict() == voted.model_dump()
        return
    with pytest.raises(InvalidInputError, match="summary policy in proposal"):
        parse_summary_policy(text, "proposal")
    with pytest.raises(PolicyError, match="summary policy in env|in env must be"):
        parse_policy(document, "env")


def test_every_summary_is_within_the_voted_caps_over_many_generated_documents(
    extractive: ExtractiveSummariser,
) -> None:
    rng = random.Random(16)
    checked = 0
    for _ in range(300):
        policy = SummaryPolicy(
            max_sentences=rng.randint(1, 5), max_ratio=rng.choice([0.01, 0.05, 0.2, 0.5, 1.0]), max_document_bytes=20000
        )
        document = _document(rng, rng.randint(1, 30))
        result = DocumentSummariser(extractive, policy).summarise("d", document)
        assert isinstance(result, Summary)
        assert within_caps(policy, document, result.text), (policy, result)
        assert result.sentences <= policy.max_sentences
        # A method drafting far too much (the whole document) is cut to the caps too.
        capped = enforce_caps(policy, document, [*split_sentences(document), document])
        assert within_caps(policy, document, capped.text)
        assert len(capped.text) <= char_budget(policy, document)
        checked += 1
    assert checked == 300


def test_a_single_long_sentence_is_cut_at_a_word_boundary_and_marked_truncated() -> None:
    document = " ".join(["word"] * 100) + "."
    capped = enforce_caps(SummaryPolicy(1, 0.1, 10_000), document, [document])
    assert capped.truncated and capped.sentences == 1
    assert capped.text == " ".join(["word"] * 10)  # 49 characters: the budget is 50, the 11th word would cross it


def test_extractive_summaries_keep_document_order_and_name_the_method(extractive: ExtractiveSummariser) -> None:
    rng = random.Random(3)
    for _ in range(40):
        sentences = [f"Sentence {i} says {_sentence(rng)}" for i in range(12)]
        document = " ".join(sentences)
        result = DocumentSummariser(extractive, SummaryPolicy(4, 1.0, 20000)).summarise("d", document)
        assert isinstance(result, Summary) and result.method == METHOD == "extractive-centroid-minilm"
        positions = [document.index(sentence) for sentence in split_sentences(result.text)]
        assert positions == sorted(positions) and len(positions) == 4


def test_batch_summarises_text_and_parquet_and_refuses_an_oversize_document_without_its_content(
    extractive: ExtractiveSummariser, tmp_path: Path
) -> None:
    source, sink = tmp_path / "documents", tmp_path / "sink"
    (source / "letters").mkdir(parents=True)
    rng = random.Random(5)
    (source / "a.txt").write_text(_document(rng, 8), encoding="utf-8")
    (source / "letters" / "b.txt").write_text(_document(rng, 6), encoding="utf-8")
    (source / "huge.txt").write_text(f"{SECRET} is secret. " * 300, encoding="utf-8")
    (source / "notes.docx").write_bytes(b"PK\x03\x04" + SECRET.encode())
    pq.write_table(
        pa.table({"id": ["p1", "p2"], "text": [_document(rng, 5), f"The {SECRET} row. " * 400]}),
        source / "rows.parquet",
    )
    report = run_batch(DocumentSummariser(extractive, POLICY), source, sink)

    records = [json.loads(line) for line in (sink / "summaries.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in records] == ["a.txt", "letters/b.txt", "p1"]
    assert all(r["method"] == METHOD and r["sentences"] <= 2 and r["ratio"] <= 0.5 for r in records)
    assert report["method"] == METHOD and report["caps_respected_pct"] == 100.0
    assert (report["summarised"], report["refused"]) == (3, 3)
    refused = {r["id"]: r["refused"] for r in report["refusals"]}
    assert "over the voted max_document_bytes of 4000" in refused["huge.txt"]
    assert "over the voted max_document_bytes of 4000" in refused["p2"]
    assert "is not a .txt or .parquet file" in refused["notes.docx"]
    for name in ("summaries.jsonl", "report.json"):
        assert SECRET not in (sink / name).read_text(encoding="utf-8")
    assert sorted(p.name for p in sink.iterdir()) == ["report.json", "summaries.jsonl"]


def test_a_parquet_without_its_text_column_is_refused_and_nothing_is_written(
    encoder_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source, sink = tmp_path / "documents", tmp_path / "sink"
    source.mkdir()
    pq.write_table(pa.table({"id": ["1"], "body": ["A text."]}), source / "rows.parquet")
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY.as_dict()), encoding="utf-8")
    args = ["--input-dir", str(source), "--output-dir", str(sink), "--policy", str(policy)]
    assert summariser_main([*args, "--encoder-dir", str(encoder_dir)]) == 2
    error = capsys.readouterr().err
    assert "parquet 'rows.parquet' has no column(s) text (it has id, body)" in error
    assert "nothing was written" in error and list(sink.iterdir()) == []


def test_a_run_without_a_voted_policy_refuses_before_reading_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(POLICY_ENV, raising=False)
    (tmp_path / "documents").mkdir()
    (tmp_path / "documents" / "a.txt").write_text("One. Two.", encoding="utf-8")
    code = summariser_main(["--input-dir", str(tmp_path / "documents"), "--output-dir", str(tmp_path / "sink")])
    assert code == 2
    assert f"no summary policy: pass --policy FILE or set {POLICY_ENV}" in capsys.readouterr().err
    assert not (tmp_path / "sink").exists()


def test_a_second_run_into_a_used_sink_is_refused(extractive: ExtractiveSummariser, tmp_path: Path) -> None:
    from containers.summariser.batch import OutputFolderError

    (tmp_path / "documents").mkdir()
    (tmp_path / "documents" / "a.txt").write_text("Good film. Dull plot. Lovely cast.", encoding="utf-8")
    run_batch(DocumentSummariser(extractive, POLICY), tmp_path / "documents", tmp_path / "sink")
    before = (tmp_path / "sink" / "summaries.jsonl").read_bytes()
    with pytest.raises(OutputFolderError, match="already holds summaries.jsonl, report.json; give an empty"):
        run_batch(DocumentSummariser(extractive, POLICY), tmp_path / "documents", tmp_path / "sink")
    assert (tmp_path / "sink" / "summaries.jsonl").read_bytes() == before


def _build_tiny_t5(folder: Path) -> Path:
    """A random 2-layer T5 with the tiny WordPiece tokenizer: what a provider's folder looks like, minus training."""
    import torch
    from transformers import BertTokenizerFast, T5Config, T5ForConditionalGeneration

    vocab = list(SPECIAL) + sorted(set(POSITIVE + NEGATIVE + FILLER)) + list("abcdefghijklmnopqrstuvwxyz.,!?")
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True)
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(vocab),
        d_model=32,
        d_ff=64,
        d_kv=16,
        num_layers=2,
        num_heads=2,
        pad_token_id=0,
        eos_token_id=SPECIAL.index("[SEP]"),
        decoder_start_token_id=0,
    )
    model = T5ForConditionalGeneration(config)
    model.generation_config.min_new_tokens = 12
    model.generation_config.suppress_tokens = [SPECIAL.index(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[MASK]")]
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def test_seq2seq_on_a_tiny_random_model_produces_capped_text(tmp_path: Path) -> None:
    from containers.summariser.seq2seq import Seq2SeqSummariser

    method = Seq2SeqSummariser(_build_tiny_t5(tmp_path / "t5"), threads=1, max_new_tokens=40)
    document = "The film was good and moving. The plot was dull. The cast was lovely and the ending was fun."
    policy = SummaryPolicy(max_sentences=1, max_ratio=0.5, max_document_bytes=4000)
    result = DocumentSummariser(method, policy).summarise("d", document)
    assert isinstance(result, Summary) and result.method == "seq2seq"
    assert result.text.strip() and within_caps(policy, document, result.text)


def test_seq2seq_refuses_a_pickle_only_model_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}", encoding="utf-8")
    (folder / "pytorch_model.bin").write_bytes(b"not loaded")
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY.as_dict()), encoding="utf-8")
    (tmp_path / "documents").mkdir()
    args = ["--input-dir", str(tmp_path / "documents"), "--output-dir", str(tmp_path / "sink")]
    assert summariser_main([*args, "--policy", str(policy), "--method", "seq2seq", "--model-dir", str(folder)]) == 2
    assert "holds only pickle checkpoint(s) pytorch_model.bin" in capsys.readouterr().err
    assert not (tmp_path / "sink").exists()


def _serve(encoder_dir: Path, extra_env: dict[str, str], args: list[str], **popen: object) -> subprocess.Popen:
    env = {**os.environ, POLICY_ENV: json.dumps(POLICY.as_dict()), **extra_env}
    command = [sys.executable, "-m", "containers.summariser", "--serve", "--encoder-dir", str(encoder_dir)]
    return subprocess.Popen(
        [*command, "--threads", "1", *args], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True, **popen
    )


def _wait_healthy(client: httpx.Client, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            if client.get("/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise AssertionError("summariser did not become healthy")


@pytest.fixture(scope="module")
def served(encoder_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """The server on a listening socket the test binds and hands over as CLEANROOM_LISTEN_FD, as the runtime does."""
    path = tmp_path_factory.mktemp("sock") / "summarise.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(16)
    fd = listener.fileno()
    process = _serve(encoder_dir, {"CLEANROOM_LISTEN_FD": str(fd)}, ["--uds", str(path)], pass_fds=(fd,))
    listener.close()
    client = httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://workload")
    try:
        _wait_healthy(client, process)
        yield client
    finally:
        client.close()
        process.terminate()
        process.wait(timeout=30)


def test_serve_mode_summarises_over_the_socket_and_names_the_method(served: httpx.Client) -> None:
    document = "Good film. The plot was dull and tedious. A lovely cast. The ending was fun. Boring music."
    answer = served.post("/summarize", json={"text": document, "id": "review-1"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["id"] == "review-1" and body["method"] == METHOD
    assert body["summary"] and within_caps(POLICY, document, body["summary"])
    assert served.get("/metadata").json() == {"method": METHOD, "policy": POLICY.as_dict()}


@pytest.mark.parametrize(
    ("content", "headers", "status", "message"),
    [
        (b'{"text": "A film."}', {"content-type": "text/plain"}, 415, "Content-Type 'text/plain' is not application"),
        (b'{"text": ', {"content-type": "application/json"}, 400, "request body is not valid JSON"),
        (b'\xff{"text": 1}', {"content-type": "application/json"}, 400, "not UTF-8: bad byte at offset 0"),
        (b'{"text": "\\ud800"}', {"content-type": "application/json"}, 400, '"text" has a lone surrogate'),
        (b'{"text": 3}', {"content-type": "application/json"}, 422, '"text" must be a string, not int'),
        (b'{"body": "x"}', {"content-type": "application/json"}, 422, 'with a "text" field'),
        (b'{"text": "  "}', {"content-type": "application/json"}, 422, "document is empty"),
    ],
)
def test_serve_mode_refuses_bad_input_in_one_line(
    served: httpx.Client, content: bytes, headers: dict[str, str], status: int, message: str
) -> None:
    answer = served.post("/summarize", content=content, headers=headers)
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert message in error and "\n" not in error
    assert served.get("/healthz").json() == {"status": "ok"}


def test_serve_mode_refuses_an_oversize_document_with_413_and_does_not_echo_it(served: httpx.Client) -> None:
    answer = served.post("/summarize", json={"text": f"The {SECRET} plan. " * 300})
    assert answer.status_code == 413
    assert "over the voted max_document_bytes of 4000" in answer.json()["error"]
    assert SECRET not in answer.text
    body = served.post("/summarize", json={"text": "x" * (6 * 4000 + 64 * 1024 + 1)})
    assert body.status_code == 413 and "request body" in body.json()["error"]
    assert "x" * 20 not in body.text


def test_the_workload_imports_neither_core_nor_tui() -> None:
    script = (
        "import sys, containers.summariser.__main__, containers.summariser.app, containers.summariser.seq2seq; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('core', 'tui')))"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_voted_policy_model_is_frozen_and_strict() -> None:
    policy = VotedSummaryPolicy(max_sentences=3, max_ratio=0.25, max_document_bytes=100)
    with pytest.raises(ValueError):
        VotedSummaryPolicy.model_validate({"max_sentences": 3.5, "max_ratio": 0.25, "max_document_bytes": 100})
    assert json.loads(policy.to_env()[POLICY_ENV]) == {"max_sentences": 3, "max_ratio": 0.25, "max_document_bytes": 100}


def test_the_encoder_returns_rows_in_the_callers_order_whatever_the_batching(encoder_dir: Path) -> None:
    import numpy as np

    encoder = SentenceEncoder(encoder_dir, threads=1)
    sentences = ["a good and moving film with a lovely cast.", "dull.", "boring plot and tedious pace."]
    together = encoder.encode(sentences)
    one_by_one = np.stack([encoder.encode([sentence])[0] for sentence in sentences])
    assert together.shape == (3, 32)
    assert np.allclose(together, one_by_one, atol=1e-5)
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
