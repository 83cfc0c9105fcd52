"""`cleanroom summarise show|send`: the party that owns the summaries datasink reads them back from a
real clean room (sandboxed summariser, real governance and key service on loopback), and sends one
document to a served summariser through the TLS ingress. The sentence encoder is a tiny randomly
initialised BERT the provider uploads as a datasource, so no pretrained model runs here."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.config.merge import merge_fragments
from core.config.party import add_application, add_data_asset, party_fragment, set_network_policy
from core.datasource import upload_datasource
from core.keys.wrap_deks import wrap_deks
from core.runtime.deployment import deployment_spec, policy_document, socket_path
from core.scenario.summary_documents import evaluation_documents
from core.storage.locator import local_store_spec
from core.summaries import SummarySink, read_summary_folder
from tests.cli_runner import cleanroom
from tests.ml_tiny_model import build_tiny_base
from tests.runtime_world import World

BATCH, SERVED = "summaries-batch", "summaries-api"
CAPS = {"max_sentences": 2, "max_ratio": 0.5, "max_document_bytes": 2000}
ENCODER = "/mnt/remote/encoder"


def _accept(
    world: World, contract_id: str, application: str, *, enable_ca: bool = False, data_owners: tuple[str, ...]
) -> None:
    """Every party votes a contract that runs ``application`` only (the hoster's fragment holds both)."""
    merged = merge_fragments(party_fragment(ws) for ws in world.parties.values()).for_applications([application])
    document = merged.document()
    hoster = world.clients["hoster"]
    hoster.create_contract(contract_id, document)
    world.vote_all(hoster.propose_contract(contract_id, hoster.contract(contract_id)["version"]))
    spec = deployment_spec(contract_id, document)
    world.vote_all(hoster.propose_deployment_spec(contract_id, spec))
    world.vote_all(hoster.propose_clean_room_policy(contract_id, policy_document(spec)))
    if enable_ca:
        world.vote_all(hoster.propose_enable_ca(contract_id))
        hoster.generate_ca_key(contract_id)
    keys = world.keys()
    for persona in data_owners:
        wrap_deks(world.parties[persona], contract_id, governance=world.clients[persona], keys=keys)


def _documents(folder: Path) -> dict[str, str]:
    """Three .txt documents, one parquet row, and one document over the voted size cap."""
    chosen = evaluation_documents()[:4]
    folder.mkdir()
    for document in chosen[:3]:
        (folder / f"{document['id']}.txt").write_text(document["text"])
    pq.write_table(pa.table({"id": [chosen[3]["id"]], "text": [chosen[3]["text"]]}), folder / "more.parquet")
    (folder / "too-long.txt").write_text(" ".join(d["text"] for d in chosen))
    return {**{f"{d['id']}.txt": d["text"] for d in chosen[:3]}, chosen[3]["id"]: chosen[3]["text"]}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Provider: the documents and the encoder; consumer: the summaries datasink; hoster: a batch
    summariser (run to its end here) and a serving one (run by the test that sends)."""
    root = tmp_path_factory.mktemp("summarise")
    world = World.create(root)
    provider, consumer, hoster = (world.parties[p] for p in ("provider", "consumer", "hoster"))
    world.documents = _documents(root / "documents")  # type: ignore[attr-defined]
    build_tiny_base(root / "encoder")
    for name, folder in (("documents", root / "documents"), ("encoder", root / "encoder")):
        add_data_asset(provider, "datasource", name, local_store_spec(provider.root / "store"))
        upload_datasource(provider, name, folder)
    add_data_asset(consumer, "datasink", "summaries", local_store_spec(consumer.root / "store"))
    encoder_mount = {"source": "encoder", "target": ENCODER}
    add_application(
        hoster,
        name="summariser",
        entrypoint="containers/summariser",
        command=[
            "python", "-m", "containers.summariser", "--input-dir", "/mnt/remote/documents",
            "--output-dir", "/mnt/remote/summaries", "--encoder-dir", ENCODER, "--threads", "1",
        ],
        mounts=[
            {"source": "documents", "target": "/mnt/remote/documents"},
            {"source": "summaries", "target": "/mnt/remote/summaries"},
            encoder_mount,
        ],
        summary_policy=CAPS,
    )  # fmt: skip
    add_application(
        hoster,
        name="summariser-api",
        entrypoint="containers/summariser",
        command=[
            "python", "-m", "containers.summariser", "--serve", "--uds", socket_path("summariser-api"),
            "--encoder-dir", ENCODER, "--threads", "1",
        ],
        mounts=[encoder_mount],
        ports=[8000],
        summary_policy=CAPS,
    )  # fmt: skip
    set_network_policy(hoster, inbound_allow=["POST /summarize"], allow_all_outbound=False)
    _accept(world, BATCH, "summariser", data_owners=("provider", "consumer"))
    yield world
    world.close()


def _show(world: World, persona: str, *args: str) -> Any:
    return cleanroom("-w", world.parties[persona].root, "summarise", "show", "--contract", BATCH, *args)


def test_show_before_the_run_says_no_summaries_yet_and_leaves_nothing(world: World) -> None:
    before = sorted(world.parties["consumer"].root.rglob("*"))
    shown = _show(world, "consumer")
    assert shown.code != 0 and shown.stdout == ""
    assert shown.stderr.startswith(f"error: datasink 'summaries' of contract '{BATCH}' holds no summaries yet")
    assert sorted(world.parties["consumer"].root.rglob("*")) == before


def test_a_party_without_a_summaries_datasink_is_told_so_and_gets_nothing(world: World) -> None:
    shown = _show(world, "provider")
    assert shown.code != 0 and shown.stdout == ""
    assert shown.stderr.startswith(f"error: contract '{BATCH}' has no datasink of provider that a summariser writes"), (
        shown.stderr
    )


def test_show_lists_every_summary_within_the_voted_caps_with_its_method(world: World) -> None:
    outcome = world.runtime().run(BATCH)
    assert outcome.exit_codes == {"summariser": 0} and outcome.sealed == ["summaries"]
    before = sorted(world.parties["consumer"].root.rglob("*"))
    shown = _show(world, "consumer", "-o", "json")
    assert shown.code == 0, shown.stderr
    received = json.loads(shown.stdout)
    documents: dict[str, str] = world.documents  # type: ignore[attr-defined]
    assert received["method"] == "extractive-centroid-minilm"
    assert received["policy"] == {"maxSentences": 2, "maxRatio": 0.5, "maxDocumentBytes": 2000}
    assert {s["id"] for s in received["summaries"]} == set(documents)
    for summary in received["summaries"]:
        assert summary["withinCaps"] is True and summary["method"] == "extractive-centroid-minilm"
        assert 1 <= summary["sentences"] <= 2
        assert summary["chars"] <= 0.5 * len(documents[summary["id"]])
        assert summary["summary"] != documents[summary["id"]]
    assert [r["id"] for r in received["refused"]] == ["too-long.txt"]
    assert "max_document_bytes of 2000" in received["refused"][0]["refused"]
    assert received["withinCaps"] is True and received["files"] == ["report.json", "summaries.jsonl"]
    table = _show(world, "consumer")
    assert table.code == 0 and "extractive-centroid-minilm" in table.stdout and "refused too-long.txt" in table.stdout
    # reading decrypts into a private temporary folder: the workspace gains no file
    assert sorted(world.parties["consumer"].root.rglob("*")) == before


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_the_console_summaries_view_lists_the_readers_summaries_against_the_caps(world: World) -> None:
    """After the batch run: key 9 shows the consumer one row per summary (sentences and ratio
    against the voted caps, the method) and the refused document by id; the provider, who
    receives no summaries, sees the hint that says how they would arrive."""
    from textual.widgets import DataTable, Static

    from core.engine import PersonaEngine
    from tui.app import CleanroomConsole
    from tui.widgets.empty_hint import EmptyHint
    from tui.widgets.summaries import SummariesView

    engines = [PersonaEngine(world.parties[p], services_home=world.home) for p in ("consumer", "provider")]
    documents: dict[str, str] = world.documents  # type: ignore[attr-defined]
    app = CleanroomConsole(engines, background=False)
    try:
        async with app.run_test(size=(160, 40)) as pilot:
            await pilot.press("9")
            await app.workers.wait_for_complete()
            await pilot.pause()
            assert app.screen.active_view == "summaries"
            view = app.screen.query_one(SummariesView)
            table = view.query_one("#summaries-table", DataTable)
            rows = [table.get_row_at(i) for i in range(table.row_count)]
            assert sorted(row[0] for row in rows) == sorted(documents)
            for row in rows:
                sentences, cap = str(row[1]).split("/")
                assert 1 <= int(sentences) <= int(cap) == 2
                assert str(row[2]).endswith(" / 0.5") and float(str(row[2]).split(" / ")[0]) <= 0.5
                assert list(row[3:]) == ["yes", "extractive-centroid-minilm", BATCH]
            caps = str(view.query_one("#summaries-caps", Static).render())
            assert f"{BATCH} → summaries" in caps and "caps: 2 sentences, ratio 0.5, 2000 bytes" in caps
            assert "refused: too-long.txt" in caps
            assert not view.query_one(EmptyHint).display

            app.action_switch_persona(1)
            await pilot.pause()
            await pilot.press("9")
            await app.workers.wait_for_complete()
            await pilot.pause()
            provider_view = app.screen.query_one(SummariesView)
            hint = provider_view.query_one(EmptyHint)
            assert provider_view.query_one("#summaries-table", DataTable).row_count == 0 and hint.display
            assert "No summaries sealed to you yet" in str(hint.render())
            assert not app._notifications, [n.message for n in app._notifications]
    finally:
        for engine in engines:
            engine.close()


def test_summaries_over_the_caps_or_written_under_other_caps_are_caught_by_the_reader(tmp_path: Path) -> None:
    sink = SummarySink("summaries", "summariser", dict(CAPS))
    record = {"id": "a", "summary": "One. Two. Three.", "document_chars": 40, "method": "m", "truncated": False}
    (tmp_path / "summaries.jsonl").write_text(json.dumps(record) + "\n")
    (tmp_path / "report.json").write_text(json.dumps({"method": "m", "policy": CAPS, "refusals": []}))
    (over,) = read_summary_folder(tmp_path, "c", sink).summaries
    assert (over.sentences, over.within_caps) == (3, False)  # counted again, not taken from the record
    (tmp_path / "report.json").write_text(json.dumps({"method": "m", "policy": {**CAPS, "max_ratio": 0.9}}))
    from core.errors import IntegrityError

    with pytest.raises(IntegrityError, match=r"written under caps .*'max_ratio': 0.9.*not the voted"):
        read_summary_folder(tmp_path, "c", sink)


def test_send_summarises_one_document_through_the_tls_ingress(world: World, tmp_path: Path) -> None:
    _accept(world, SERVED, "summariser-api", enable_ca=True, data_owners=("provider",))
    consumer = world.parties["consumer"].root
    letter = evaluation_documents()[10]
    (tmp_path / "letter.txt").write_text(letter["text"])
    (tmp_path / "huge.txt").write_text(letter["text"] * 4)
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    unserved = cleanroom("-w", consumer, "summarise", "send", "--contract", BATCH, "--file", tmp_path / "letter.txt")
    assert unserved.code != 0 and f"contract '{BATCH}' has no running clean room with an ingress" in unserved.stderr
    bad = cleanroom("-w", consumer, "summarise", "send", "--contract", SERVED, "--file", tmp_path / "latin1.txt")
    assert bad.code != 0 and "is not UTF-8 text (bad byte at offset 3)" in bad.stderr

    runtime = world.runtime()
    seen: list[str] = []
    runtime.listener = lambda kind, _detail: seen.append(kind)
    thread = threading.Thread(target=lambda: runtime.run(SERVED), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while runtime.ingress_url is None or "running" not in seen:
            assert time.monotonic() < deadline and thread.is_alive(), seen
            time.sleep(0.05)
        send = (
            "-w",
            consumer,
            "summarise",
            "send",
            "--contract",
            SERVED,
            "--file",
            tmp_path / "letter.txt",
            "-o",
            "json",
        )
        sent = cleanroom(*send)
        while sent.code != 0 and "502" in sent.stderr and time.monotonic() < deadline:  # encoder still loading
            time.sleep(0.2)
            sent = cleanroom(*send)
        assert sent.code == 0, sent.stderr
        answer = json.loads(sent.stdout)
        assert answer["id"] == "letter.txt" and answer["method"] == "extractive-centroid-minilm"
        assert 1 <= answer["sentences"] <= 2 and answer["chars"] <= 0.5 * len(letter["text"])
        huge = cleanroom("-w", consumer, "summarise", "send", "--contract", SERVED, "--file", tmp_path / "huge.txt")
        assert huge.code != 0 and huge.stdout == ""
        assert f"summariser of '{SERVED}' refused 'huge.txt' (413)" in huge.stderr
        assert "max_document_bytes of 2000" in huge.stderr
    finally:
        runtime.request_stop("test finished")
        thread.join(timeout=60)
