"""`cleanroom datasource|datasink ...` end to end, and every bad input the issue lists."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from core.crypto.envelope import HEADER_SIZE, TAG_SIZE
from tests.cli_runner import Outcome, cleanroom

MiB = 1 << 20
CLI = Path(sys.executable).parent / "cleanroom"


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    folder = tmp_path / "data"
    (folder / "sub").mkdir(parents=True)
    (folder / "big.bin").write_bytes(os.urandom(3 * MiB + 1234))
    (folder / "sub" / "labels.csv").write_bytes(b"text,label\ngood,1\nbad,0\n")
    return folder


@pytest.fixture
def consumer(tmp_path: Path, dataset: Path) -> Path:
    workspace = tmp_path / "W" / "consumer"
    assert cleanroom("-w", workspace, "config", "init", "--persona", "consumer").code == 0
    assert cleanroom("-w", workspace, "config", "add-datasource", "--name", "training-data").code == 0
    assert (
        cleanroom("-w", workspace, "datasource", "upload", "--name", "training-data", "--dataset-folder", dataset).code
        == 0
    )
    return workspace


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _blob(workspace: Path, file: str) -> Path:
    matches = list((workspace / "store" / "training-data" / "data").glob(f"*/{file}"))
    assert len(matches) == 1
    return matches[0]


def _assert_one_line_error(outcome: Outcome, code: int, *needles: str) -> None:
    assert outcome.code == code, outcome
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), outcome.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_the_issue_flow_through_the_installed_command(tmp_path: Path, dataset: Path) -> None:
    """The README flow, via the real console script in subprocesses."""
    workspace, out = tmp_path / "W" / "consumer", tmp_path / "out"
    steps = [
        ["config", "init", "--persona", "consumer"],
        ["config", "add-datasource", "--name", "training-data"],
        ["datasource", "upload", "--name", "training-data", "--dataset-folder", str(dataset)],
        ["datasource", "download", "--name", "training-data", "--target-folder", str(out)],
    ]
    for step in steps:
        done = subprocess.run([str(CLI), "--workspace", str(workspace), *step], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert _tree(out) == _tree(dataset)
    listed = subprocess.run(
        [str(CLI), "-w", str(workspace), "datasource", "list", "--output", "json"],
        capture_output=True,
        text=True,
        check=True,
    )
    [status] = json.loads(listed.stdout)
    assert status["name"] == "training-data" and status["uploaded"] and status["files"] == 2
    assert status["plaintextBytes"] == sum(len(v) for v in _tree(dataset).values())


def test_store_holds_only_ciphertext(consumer: Path, dataset: Path) -> None:
    sealed = _blob(consumer, "big.bin").read_bytes()
    plain = (dataset / "big.bin").read_bytes()
    assert len(sealed) == HEADER_SIZE + len(plain) + 4 * TAG_SIZE
    assert plain[:4096] not in sealed


def test_datasink_download(tmp_path: Path, dataset: Path) -> None:
    """A datasink is read back the same way (here sealed by the same engine the runtime uses)."""
    from core.crypto.kek import dek_for
    from core.datasource import download_asset  # noqa: F401  (engine path used by the verb)
    from core.storage.local import LocalBlobStore
    from core.storage.transfer import upload_folder

    workspace = tmp_path / "W" / "provider"
    cleanroom("-w", workspace, "config", "init", "--persona", "provider")
    assert cleanroom("-w", workspace, "config", "add-datasink", "--name", "trained-model").code == 0
    upload_folder(
        LocalBlobStore(workspace / "store"),
        "trained-model",
        dek_for(workspace / "keys", "trained-model"),
        dataset,
        label="datasink 'trained-model'",
    )
    outcome = cleanroom(
        "-w", workspace, "datasink", "download", "--name", "trained-model", "--target-folder", tmp_path / "trained"
    )
    assert outcome.code == 0, outcome.stderr
    assert _tree(tmp_path / "trained") == _tree(dataset)
    listed = json.loads(cleanroom("-w", workspace, "datasink", "list", "-o", "json").stdout)
    assert [s["name"] for s in listed] == ["trained-model"]


def test_unknown_datasource_name(consumer: Path, tmp_path: Path, dataset: Path) -> None:
    _assert_one_line_error(
        cleanroom("-w", consumer, "datasource", "upload", "--name", "nope", "--dataset-folder", dataset),
        3,
        "datasource 'nope'",
        "add-datasource",
    )
    _assert_one_line_error(
        cleanroom("-w", consumer, "datasource", "download", "--name", "nope", "--target-folder", tmp_path / "out"),
        3,
        "datasource 'nope'",
    )
    _assert_one_line_error(
        cleanroom(
            "-w", consumer, "datasink", "download", "--name", "training-data", "--target-folder", tmp_path / "out"
        ),
        3,
        "datasink 'training-data'",
    )
    assert not (tmp_path / "out").exists()


def test_missing_folder(consumer: Path, tmp_path: Path) -> None:
    _assert_one_line_error(
        cleanroom(
            "-w", consumer, "datasource", "upload", "--name", "training-data", "--dataset-folder", tmp_path / "missing"
        ),
        3,
        "missing does not exist",
    )


def test_wrong_workspace(tmp_path: Path, dataset: Path) -> None:
    _assert_one_line_error(
        cleanroom("-w", tmp_path / "nowhere", "datasource", "upload", "--name", "x", "--dataset-folder", dataset),
        3,
        "no workspace at",
        "nowhere",
        "config init",
    )


def test_wrong_key_writes_no_plaintext(consumer: Path, tmp_path: Path) -> None:
    """Another party declares the same name over the consumer's store: its DEK cannot open the blobs."""
    thief = tmp_path / "W" / "thief"
    cleanroom("-w", thief, "config", "init", "--persona", "thief")
    cleanroom("-w", thief, "config", "add-datasource", "--name", "training-data", "--store-path", consumer / "store")
    out = tmp_path / "out"
    _assert_one_line_error(
        cleanroom("-w", thief, "datasource", "download", "--name", "training-data", "--target-folder", out),
        4,
        "training-data",
        "wrong key",
    )
    assert not out.exists() or _tree(out) == {}


def test_wrong_kek_is_named(consumer: Path, tmp_path: Path) -> None:
    other = tmp_path / "W" / "other"
    cleanroom("-w", other, "config", "init", "--persona", "other")
    for name in ("kek_privk.pem", "kek_pub.pem"):
        shutil.copy(other / "keys" / name, consumer / "keys" / name)
    out = tmp_path / "out"
    _assert_one_line_error(
        cleanroom("-w", consumer, "datasource", "download", "--name", "training-data", "--target-folder", out),
        4,
        "DEK of 'training-data' cannot be unwrapped",
    )
    assert not out.exists()


def _download_fails(consumer: Path, tmp_path: Path, *needles: str) -> None:
    out = tmp_path / "out"
    _assert_one_line_error(
        cleanroom("-w", consumer, "datasource", "download", "--name", "training-data", "--target-folder", out),
        4,
        "file 'big.bin'",
        *needles,
    )
    assert not (out / "big.bin").exists()
    assert not [p for p in out.rglob("*") if "big.bin" in p.name]  # no temporary plaintext either


def test_one_flipped_byte_in_a_stored_chunk(consumer: Path, tmp_path: Path) -> None:
    blob = _blob(consumer, "big.bin")
    sealed = bytearray(blob.read_bytes())
    sealed[HEADER_SIZE + 2 * (MiB + TAG_SIZE) + 999] ^= 0x01
    blob.write_bytes(bytes(sealed))
    _download_fails(consumer, tmp_path, "chunk 2 failed authentication")


def test_truncated_blob(consumer: Path, tmp_path: Path) -> None:
    blob = _blob(consumer, "big.bin")
    blob.write_bytes(blob.read_bytes()[: HEADER_SIZE + 3 * (MiB + TAG_SIZE)])
    _download_fails(consumer, tmp_path, "truncated after chunk 2")


def test_swapped_chunks(consumer: Path, tmp_path: Path) -> None:
    blob = _blob(consumer, "big.bin")
    sealed = blob.read_bytes()
    step = MiB + TAG_SIZE
    header, body = sealed[:HEADER_SIZE], sealed[HEADER_SIZE:]
    chunks = [body[i : i + step] for i in range(0, len(body), step)]
    chunks[1], chunks[2] = chunks[2], chunks[1]
    blob.write_bytes(header + b"".join(chunks))
    _download_fails(consumer, tmp_path, "chunk 1 failed authentication")


def test_every_verb_has_help_with_an_example() -> None:
    verbs = [
        ["datasource", "upload"],
        ["datasource", "download"],
        ["datasource", "list"],
        ["datasink", "download"],
        ["datasink", "list"],
        ["datasource"],
        ["datasink"],
    ]
    for verb in verbs:
        outcome = cleanroom(*verb, "--help")
        assert outcome.code == 0 and "Example" in outcome.stdout and "cleanroom" in outcome.stdout, verb
