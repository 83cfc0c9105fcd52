"""The streaming envelope: round trips at every chunk boundary, and every tampering is caught."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from core.crypto import envelope
from core.crypto.envelope import (
    HEADER_SIZE,
    TAG_SIZE,
    decrypt_bytes,
    decrypt_stream,
    decrypt_to_path,
    encrypt_bytes,
    encrypt_stream,
    encrypted_size,
)
from core.errors import IntegrityError, InvalidInputError

KEY = bytes(range(32))
CHUNK = 64


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 5 * CHUNK + 17])
def test_round_trip_at_every_chunk_boundary(size: int) -> None:
    plaintext = os.urandom(size)
    blob = encrypt_bytes(KEY, plaintext, chunk_size=CHUNK)
    assert len(blob) == encrypted_size(size, CHUNK)
    assert decrypt_bytes(KEY, blob) == plaintext


def test_same_plaintext_seals_differently_each_time() -> None:
    assert encrypt_bytes(KEY, b"same") != encrypt_bytes(KEY, b"same")


class ShortReads(io.RawIOBase):
    """A source that returns at most 7 bytes per read, like a pipe or socket."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        chunk = self._data.read(min(7, len(buffer)))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def test_short_reads_are_handled_both_ways() -> None:
    plaintext = os.urandom(4 * CHUNK + 3)
    sealed = io.BytesIO()
    encrypt_stream(KEY, ShortReads(plaintext), sealed, chunk_size=CHUNK)
    opened = io.BytesIO()
    decrypt_stream(KEY, ShortReads(sealed.getvalue()), opened)
    assert opened.getvalue() == plaintext


def test_progress_reports_cumulative_plaintext_bytes() -> None:
    plaintext = os.urandom(3 * CHUNK + 5)
    seen: list[int] = []
    blob = io.BytesIO()
    encrypt_stream(KEY, io.BytesIO(plaintext), blob, chunk_size=CHUNK, progress=seen.append)
    assert seen == [CHUNK, 2 * CHUNK, 3 * CHUNK, 3 * CHUNK + 5]
    seen.clear()
    decrypt_stream(KEY, io.BytesIO(blob.getvalue()), io.BytesIO(), progress=seen.append)
    assert seen == [CHUNK, 2 * CHUNK, 3 * CHUNK, 3 * CHUNK + 5]


def _chunks(blob: bytes) -> tuple[bytes, list[bytes]]:
    body = blob[HEADER_SIZE:]
    step = CHUNK + TAG_SIZE
    return blob[:HEADER_SIZE], [body[i : i + step] for i in range(0, len(body), step)]


SEALED = encrypt_bytes(KEY, os.urandom(4 * CHUNK + 10), chunk_size=CHUNK)


@pytest.mark.parametrize("offset", [HEADER_SIZE, HEADER_SIZE + CHUNK + TAG_SIZE + 3, len(SEALED) - 1])
def test_one_flipped_byte_in_a_chunk_is_caught(offset: int) -> None:
    tampered = bytearray(SEALED)
    tampered[offset] ^= 0x01
    with pytest.raises(IntegrityError, match="failed authentication"):
        decrypt_bytes(KEY, bytes(tampered))


@pytest.mark.parametrize("offset", [4, 5, 9])  # version, chunk size, nonce prefix
def test_a_flipped_header_byte_is_caught(offset: int) -> None:
    tampered = bytearray(SEALED)
    tampered[offset] ^= 0x01
    with pytest.raises(IntegrityError):
        decrypt_bytes(KEY, bytes(tampered))


def test_bad_magic_names_the_blob() -> None:
    with pytest.raises(IntegrityError, match="data.csv is not a cleanroom encrypted blob"):
        decrypt_bytes(KEY, b"XXXX" + SEALED[4:], label="data.csv")


def test_swapped_chunks_are_caught() -> None:
    header, chunks = _chunks(SEALED)
    chunks[1], chunks[2] = chunks[2], chunks[1]
    with pytest.raises(IntegrityError, match="chunk 1 failed authentication"):
        decrypt_bytes(KEY, header + b"".join(chunks))


def test_truncation_at_a_chunk_boundary_is_named() -> None:
    header, chunks = _chunks(SEALED)
    with pytest.raises(IntegrityError, match="truncated after chunk 2"):
        decrypt_bytes(KEY, header + b"".join(chunks[:3]))


def test_truncation_inside_a_chunk_is_caught() -> None:
    with pytest.raises(IntegrityError):
        decrypt_bytes(KEY, SEALED[:-5])
    with pytest.raises(IntegrityError, match="truncated"):
        decrypt_bytes(KEY, SEALED[: HEADER_SIZE + 3])
    with pytest.raises(IntegrityError, match="shorter than the header"):
        decrypt_bytes(KEY, SEALED[:10])


def test_appended_data_is_named() -> None:
    other = encrypt_bytes(KEY, os.urandom(CHUNK), chunk_size=CHUNK)
    full = encrypt_bytes(KEY, os.urandom(2 * CHUNK), chunk_size=CHUNK)
    # a full final chunk followed by another chunk's bytes
    with pytest.raises(IntegrityError, match="appended after its final chunk 1"):
        decrypt_bytes(KEY, full + other[HEADER_SIZE:])


def test_wrong_key_is_a_one_line_integrity_error() -> None:
    with pytest.raises(IntegrityError) as caught:
        decrypt_bytes(os.urandom(32), SEALED, label="train.csv")
    line = caught.value.one_line()
    assert "\n" not in line and "train.csv" in line and "wrong key" in line


def test_bad_key_length_is_invalid_input() -> None:
    with pytest.raises(InvalidInputError, match="32"):
        encrypt_bytes(b"short", b"x")


def test_decrypt_to_path_writes_nothing_when_the_last_chunk_fails(tmp_path: Path) -> None:
    plaintext = os.urandom(4 * CHUNK + 10)
    tampered = bytearray(encrypt_bytes(KEY, plaintext, chunk_size=CHUNK))
    tampered[-1] ^= 0x80  # only the final chunk is bad: earlier chunks verify and are written
    target = tmp_path / "out" / "data.bin"
    with pytest.raises(IntegrityError):
        decrypt_to_path(KEY, io.BytesIO(bytes(tampered)), target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []  # no temporary file left behind either


def test_decrypt_to_path_keeps_an_existing_file_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(b"previous good copy")
    with pytest.raises(IntegrityError):
        decrypt_to_path(os.urandom(32), io.BytesIO(SEALED), target)
    assert target.read_bytes() == b"previous good copy"


def test_decrypt_to_path_round_trip(tmp_path: Path) -> None:
    plaintext = os.urandom(10 * CHUNK)
    target = tmp_path / "x" / "plain.bin"
    size = decrypt_to_path(KEY, io.BytesIO(encrypt_bytes(KEY, plaintext, chunk_size=CHUNK)), target)
    assert size == len(plaintext) and target.read_bytes() == plaintext


def test_default_chunk_size_is_one_mebibyte() -> None:
    assert envelope.DEFAULT_CHUNK_SIZE == 1 << 20


def test_sealing_reader_yields_the_same_format_in_small_reads() -> None:
    plaintext = os.urandom(3 * CHUNK + 9)
    reader = envelope.SealingReader(KEY, io.BytesIO(plaintext), chunk_size=CHUNK)
    pieces = []
    while piece := reader.read(13):
        pieces.append(piece)
    blob = b"".join(pieces)
    assert reader.header == blob[:HEADER_SIZE]
    assert len(blob) == encrypted_size(len(plaintext), CHUNK)
    assert decrypt_bytes(KEY, blob) == plaintext


def test_expected_header_rejects_a_valid_blob_under_another_name() -> None:
    other = encrypt_bytes(KEY, b"other file", chunk_size=CHUNK)
    with pytest.raises(IntegrityError, match="not the blob its manifest sealed"):
        decrypt_stream(KEY, io.BytesIO(other), io.BytesIO(), expected_header=SEALED[:HEADER_SIZE])
