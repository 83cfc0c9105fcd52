"""The encrypted-blob envelope: streaming AES-256-GCM in the STREAM construction (as age and Tink).

A datasource file is sealed in fixed-size chunks so that files of any size stream through a
bounded buffer, and a reader can verify (and release) each chunk before reading the next.
One GCM tag over a whole file would force either buffering everything or releasing
unverified plaintext; STREAM avoids both.

Byte format (all integers big-endian; see ``docs/formats/encrypted-blob.md``)::

    header  = magic "CRSE" (4) || version 0x01 (1) || chunk_size u32 (4) || nonce_prefix (7)
    chunk_i = AES-256-GCM(key, nonce_i, plaintext_i, aad=header)   # ciphertext || 16-byte tag
    nonce_i = nonce_prefix (7) || i as u32 (4) || last_flag (1)     # 0x01 on the final chunk only

Every chunk but the last carries exactly ``chunk_size`` plaintext bytes; the last carries
0..chunk_size bytes (an empty file is one empty last chunk). Because the counter and the
last-chunk flag are in the nonce and the header is the AAD of every chunk, reordering,
truncation at a chunk boundary, appending, and editing the header all fail authentication.

The nonce prefix is random per blob (56 bits), so one DEK may seal many blobs: the chance of a
prefix collision stays below 2^-32 up to 2^12 blobs per DEK and is negligible for datasources.
"""

from __future__ import annotations

import io
import os
import struct
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.errors import IntegrityError, InvalidInputError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

MAGIC = b"CRSE"
VERSION = 1
HEADER = struct.Struct(">4sBI7s")
HEADER_SIZE = HEADER.size  # 16
NONCE_PREFIX_SIZE = 7
TAG_SIZE = 16
KEY_SIZE = 32
DEFAULT_CHUNK_SIZE = 1 << 20  # 1 MiB: large enough that per-chunk overhead is noise
MIN_CHUNK_SIZE = 16
MAX_CHUNK_SIZE = 1 << 26  # 64 MiB: bounds the memory a hostile header can make a reader allocate
MAX_CHUNKS = 1 << 32

Progress = Callable[[int], None]
"""Called with the cumulative number of plaintext bytes processed so far."""


def encrypted_size(plaintext_size: int, chunk_size: int = DEFAULT_CHUNK_SIZE) -> int:
    """Exact size of the blob that seals ``plaintext_size`` bytes (for progress totals)."""
    chunks = max(1, -(-plaintext_size // chunk_size))
    return HEADER_SIZE + plaintext_size + chunks * TAG_SIZE


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def _check_key(key: bytes) -> AESGCM:
    if len(key) != KEY_SIZE:
        raise InvalidInputError(
            f"envelope key is {len(key)} bytes, not {KEY_SIZE}", hint="use the datasource's 32-byte DEK"
        )
    return AESGCM(key)


def _read_full(source: BinaryIO, view: memoryview) -> int:
    """Fill ``view`` from ``source``; short only at end of stream (pipes and sockets read short)."""
    filled = 0
    while filled < len(view):
        # binary files (io.RawIOBase / io.BufferedIOBase) have readinto; typing.BinaryIO omits it
        got = source.readinto(view[filled:])  # type: ignore[attr-defined]
        if not got:
            break
        filled += got
    return filled


def seal_chunks(
    key: bytes,
    source: BinaryIO,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Progress | None = None,
    nonce_prefix: bytes | None = None,
) -> Iterator[memoryview]:
    """Yield the header, then each sealed chunk, of the blob that seals ``source``.

    Pull-based so a blob store can read ciphertext as it uploads. The yielded views share one
    reused buffer: use each before asking for the next. ``nonce_prefix`` exists only so the
    documented test vector can be recomputed; callers leave it to ``os.urandom`` (reusing a
    prefix under one key breaks GCM).
    """
    aead = _check_key(key)
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise InvalidInputError(
            f"chunk size {chunk_size} is out of range", hint=f"use {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE} bytes"
        )
    prefix = os.urandom(NONCE_PREFIX_SIZE) if nonce_prefix is None else nonce_prefix
    if len(prefix) != NONCE_PREFIX_SIZE:
        raise InvalidInputError(f"nonce prefix must be {NONCE_PREFIX_SIZE} bytes")
    header = HEADER.pack(MAGIC, VERSION, chunk_size, prefix)
    yield memoryview(header)

    # Two plaintext buffers: reading one chunk ahead is how we know which chunk is the last.
    current, ahead = bytearray(chunk_size), bytearray(chunk_size)
    out = bytearray(chunk_size + TAG_SIZE)
    current_len = _read_full(source, memoryview(current))
    counter, done = 0, 0
    while True:
        ahead_len = _read_full(source, memoryview(ahead)) if current_len == chunk_size else 0
        last = ahead_len == 0
        if counter >= MAX_CHUNKS:
            raise InvalidInputError("plaintext is too large for one blob", hint="use a larger chunk size")
        sealed = memoryview(out)[: current_len + TAG_SIZE]
        aead.encrypt_into(_nonce(prefix, counter, last), memoryview(current)[:current_len], header, sealed)
        yield sealed
        done += current_len
        if progress is not None:
            progress(done)
        if last:
            return
        current, ahead = ahead, current
        current_len = ahead_len
        counter += 1


def encrypt_stream(
    key: bytes,
    source: BinaryIO,
    sink: BinaryIO,
    *,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Progress | None = None,
    nonce_prefix: bytes | None = None,
) -> int:
    """Seal everything readable from ``source`` into ``sink``; return the bytes written."""
    written = 0
    for piece in seal_chunks(key, source, chunk_size=chunk_size, progress=progress, nonce_prefix=nonce_prefix):
        sink.write(piece)
        written += len(piece)
    return written


class SealingReader(io.RawIOBase):
    """A readable stream of the sealed blob of ``source``: what ``BlobStore.put`` consumes on upload.

    ``header`` is available after the first read; the upload manifest records it to bind each
    blob to its file name.
    """

    def __init__(
        self, key: bytes, source: BinaryIO, *, chunk_size: int = DEFAULT_CHUNK_SIZE, progress: Progress | None = None
    ) -> None:
        super().__init__()
        self._pieces = seal_chunks(key, source, chunk_size=chunk_size, progress=progress)
        self._piece = memoryview(b"")
        self.header = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        while not self._piece:
            piece = next(self._pieces, None)
            if piece is None:
                return 0
            if not self.header:
                self.header = bytes(piece)
            self._piece = piece
        view = memoryview(buffer)
        size = min(len(view), len(self._piece))
        view[:size] = self._piece[:size]
        self._piece = self._piece[size:]
        return size


def read_header(source: BinaryIO, *, label: str = "blob") -> tuple[bytes, int, bytes]:
    """Parse and sanity-check the header; return (raw header, chunk size, nonce prefix)."""
    buffer = bytearray(HEADER_SIZE)
    raw = bytes(buffer[: _read_full(source, memoryview(buffer))])
    if len(raw) < HEADER_SIZE:
        raise IntegrityError(
            f"{label} is truncated: {len(raw)} bytes, shorter than the header",
            hint="re-upload it from the owner's plaintext",
        )
    magic, version, chunk_size, prefix = HEADER.unpack(raw)
    if magic != MAGIC:
        raise IntegrityError(
            f"{label} is not a cleanroom encrypted blob (bad magic {magic!r})",
            hint="only blobs written by `cleanroom datasource upload` can be decrypted",
        )
    if version != VERSION:
        raise IntegrityError(
            f"{label} has envelope version {version}, this build reads {VERSION}", hint="upgrade cleanroom-console"
        )
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise IntegrityError(
            f"{label} header declares chunk size {chunk_size}, out of range",
            hint="the header was tampered with; re-upload the blob",
        )
    return raw, chunk_size, prefix


def decrypt_stream(
    key: bytes,
    source: BinaryIO,
    sink: BinaryIO,
    *,
    progress: Progress | None = None,
    label: str = "blob",
    expected_header: bytes | None = None,
) -> int:
    """Verify and open a blob from ``source`` into ``sink``; return the plaintext size.

    Only verified chunks reach ``sink``. A failure part-way leaves the verified prefix in
    ``sink``; use :func:`decrypt_to_path` when nothing at all may appear unless every chunk
    verifies. ``expected_header`` (from an upload manifest) rejects a valid blob that was
    moved under another file's name.
    """
    aead = _check_key(key)
    header, chunk_size, prefix = read_header(source, label=label)
    if expected_header is not None and header != expected_header:
        raise IntegrityError(
            f"{label} is not the blob its manifest sealed (replaced or swapped with another)",
            hint="re-upload it from the owner's plaintext",
        )
    sealed_size = chunk_size + TAG_SIZE
    current, ahead = bytearray(sealed_size), bytearray(sealed_size)
    out = bytearray(chunk_size)
    current_len = _read_full(source, memoryview(current))
    counter, done = 0, 0
    while True:
        ahead_len = _read_full(source, memoryview(ahead)) if current_len == sealed_size else 0
        last = ahead_len == 0
        if current_len < TAG_SIZE:
            raise IntegrityError(
                f"{label} is truncated: chunk {counter} has {current_len} bytes, less than a tag",
                hint="re-upload it from the owner's plaintext",
            )
        sealed = memoryview(current)[:current_len]
        plain = memoryview(out)[: current_len - TAG_SIZE]
        try:
            aead.decrypt_into(_nonce(prefix, counter, last), sealed, header, plain)
        except InvalidTag:
            raise _explain_failure(aead, prefix, counter, last, sealed, header, label) from None
        sink.write(plain)
        done += len(plain)
        if progress is not None:
            progress(done)
        if last:
            return done
        current, ahead = ahead, current
        current_len = ahead_len
        counter += 1


def _explain_failure(
    aead: AESGCM, prefix: bytes, counter: int, last: bool, sealed: memoryview, header: bytes, label: str
) -> IntegrityError:
    """Name the failure: a chunk that verifies with the other flag means truncation or appending."""
    try:
        aead.decrypt(_nonce(prefix, counter, not last), bytes(sealed), header)
    except InvalidTag:
        return IntegrityError(
            f"{label}: chunk {counter} failed authentication (wrong key, tampered or reordered chunks)",
            hint="check that this is the owner's workspace, or re-upload the blob",
        )
    if last:
        return IntegrityError(
            f"{label} is truncated after chunk {counter} (its final chunk is missing)",
            hint="re-upload it from the owner's plaintext",
        )
    return IntegrityError(
        f"{label} has data appended after its final chunk {counter}", hint="re-upload it from the owner's plaintext"
    )


def decrypt_to_path(
    key: bytes,
    source: BinaryIO,
    target: Path,
    *,
    progress: Progress | None = None,
    label: str = "blob",
    expected_header: bytes | None = None,
) -> int:
    """Decrypt into ``target`` atomically: a temporary name, renamed only after the last chunk verifies.

    If any chunk fails, the temporary file is removed and ``target`` is left as it was, so no
    plaintext of a blob that failed authentication is ever visible under its name.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as handle:
            size = decrypt_stream(key, source, handle, progress=progress, label=label, expected_header=expected_header)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        return size
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def encrypt_bytes(
    key: bytes, plaintext: bytes, *, chunk_size: int = DEFAULT_CHUNK_SIZE, nonce_prefix: bytes | None = None
) -> bytes:
    """Seal an in-memory value (small documents, test vectors)."""
    sink = io.BytesIO()
    encrypt_stream(key, io.BytesIO(plaintext), sink, chunk_size=chunk_size, nonce_prefix=nonce_prefix)
    return sink.getvalue()


def decrypt_bytes(key: bytes, blob: bytes, *, label: str = "blob") -> bytes:
    """Open an in-memory blob; raises IntegrityError exactly as :func:`decrypt_stream` does."""
    sink = io.BytesIO()
    decrypt_stream(key, io.BytesIO(blob), sink, label=label)
    return sink.getvalue()
