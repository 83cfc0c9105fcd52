"""The vulnerability scan of a model package: an allow-list, never a deny-list.

A file passes only when its suffix is allowed where it lies *and* its content proves the format:
safetensors (header validated byte for byte), ONNX (parsed without external data; op domains and
opset checked; external data kept inside the folder), JSON, UTF-8 text, the wrapper's Python
source and offline wheels. Anything pickle-bearing is vulnerable whatever any scanner says: a raw
pickle stream (sniffed by its opcodes, not by its name), a zip holding a pickle (a torch
``.pt/.bin/.ckpt`` checkpoint), a numpy object array, or a file named as a pickle format.

picklescan only *names* what a pickle would import, for the report; its verdict never clears a
file. Measured here with picklescan 1.0.5: payloads built on ``importlib.import_module``,
``marshal.loads`` and ``pkgutil.get_importer`` are reported only as "suspicious" with zero issues
(a pass); ``pip.main`` and ``pkgutil.resolve_name`` are caught. The opcode sniff catches them all.

The walk never follows a link: directories are read with ``os.scandir`` and ``lstat``, files are
opened with ``O_NOFOLLOW | O_NONBLOCK`` and re-checked with ``fstat``, so a symlink, FIFO or
device swapped in between is refused rather than read (or blocked on).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickletools
import stat
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath
from typing import IO, Any, cast

MAX_FILES = 10_000
MAX_DEPTH = 16
# A safetensors header is JSON naming each tensor; 100 MB covers any real model many times over.
SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024
# tokenizer.json of large vocabularies reaches tens of MB; configs and vocabularies stay below.
TEXT_MAX_BYTES = 64 * 1024 * 1024
# The pickle sniff reads opcodes from the stream itself, up to this many bytes: an argument that
# long (a giant string opcode hiding the call behind it) still ends inside what is read.
PICKLE_SNIFF_LIMIT = 64 * 1024 * 1024
# This many opcodes parsed without an error is a pickle: no text or model format gets that far.
PICKLE_SNIFF_OPCODES = 64
ZIP_MAX_MEMBERS = 10_000
PICKLESCAN_MAX_BYTES = 16 * 1024 * 1024
BLOCK = 1 << 20

# onnxruntime's contrib ops (the int8 QLinear*/DynamicQuantize* kernels its quantiser emits, and
# its transformer fusions) live in the com.microsoft domain: the project's own int8 export needs it.
ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib", ".bin", ".pt", ".pth", ".ckpt", ".dill"})
NUMPY_SUFFIXES = frozenset({".npy", ".npz"})
# Hub model folders carry git's text metadata files; read as UTF-8 text, they are harmless.
GIT_TEXT_FILES = frozenset({".gitattributes", ".gitignore"})
# Where each suffix may lie. A bare folder (not a package) is scanned under the model/ rules.
AREA_SUFFIXES: dict[str, frozenset[str]] = {
    "model": frozenset({".safetensors", ".onnx", ".json", ".txt", ".md"}),
    "src": frozenset({".py", ".txt", ".yml", ".yaml", ".json", ".md"}),
    "privatepkgs": frozenset({".whl"}),
    "": frozenset({".md"}),
}
AREA_FIX = {
    "model": "model/ holds only safetensors, ONNX, JSON and UTF-8 text (vocabularies, README)",
    "src": "src/ holds only the wrapper's Python source, requirements.txt, settings.yml and JSON/text",
    "privatepkgs": "privatepkgs/ holds only .whl files pinned by hash in src/requirements.txt",
    "": "a package's top level holds only model/, src/, privatepkgs/ and README.md",
}
SAFETENSORS_DTYPES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}


@dataclass(frozen=True)
class Finding:
    """Why one file is refused: ``reason`` is a stable code, ``message`` names the file and the fix."""

    path: str
    reason: str
    message: str
    scanner: str | None = None

    def one_line(self) -> str:
        note = f" [{self.scanner}]" if self.scanner else ""
        return f"{self.path}: {self.message}{note}"


@dataclass(frozen=True)
class ScannedFile:
    """A file the allow-list accepted, with the digest a contract can pin."""

    path: str
    kind: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ScanReport:
    root: str
    files: tuple[ScannedFile, ...]
    findings: tuple[Finding, ...]

    @property
    def vulnerable(self) -> bool:
        return bool(self.findings)

    def document(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "vulnerable": self.vulnerable,
            "files": [vars(f) for f in self.files],
            "findings": [{**vars(f), "line": f.one_line()} for f in self.findings],
        }


@dataclass
class _Scan:
    root: Path
    files: list[ScannedFile] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    # relative path -> bytes an ONNX model reads from it (offset + length, the largest seen)
    external_data: dict[str, int] = field(default_factory=dict)
    # regular files the walk reached (without crossing a link): the only ones external data may name
    regular: set[str] = field(default_factory=set)
    count: int = 0

    def refuse(self, rel: str, reason: str, message: str, scanner: str | None = None) -> None:
        self.findings.append(Finding(rel, reason, message, scanner))


class _Refused(Exception):
    """One file's content failed its format check (caught per file, becomes a finding)."""

    def __init__(self, reason: str, message: str, scanner: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.scanner = scanner


# -- walking ----------------------------------------------------------------------------------------
def scan_folder(root: Path, *, package: bool = False) -> ScanReport:
    """Scan every entry under ``root``. With ``package``, the top-level folders choose the rules
    (model/, src/, privatepkgs/); without, everything is held to the model/ rules."""
    root = Path(root)
    info = os.lstat(root)
    scan = _Scan(root)
    if stat.S_ISLNK(info.st_mode):
        scan.refuse(root.name, "symlink", "is a symbolic link; pass the real folder")
    elif stat.S_ISREG(info.st_mode):
        scan.root = root.parent
        _scan_file(scan, root, root.name, "model")
    elif not stat.S_ISDIR(info.st_mode):
        scan.refuse(root.name, "special-file", "is not a regular file or folder; pass a model folder")
    else:
        _walk(scan, root, "", 0, None if package else "model")
    _check_external_data(scan)
    return ScanReport(str(root), tuple(sorted(scan.files, key=lambda f: f.path)), tuple(scan.findings))


def _walk(scan: _Scan, folder: Path, prefix: str, depth: int, area: str | None) -> None:
    if depth > MAX_DEPTH:
        scan.refuse(prefix, "too-deep", f"nests more than {MAX_DEPTH} folders; flatten the package")
        return
    try:
        with os.scandir(folder) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError as exc:
        scan.refuse(prefix or ".", "unreadable", f"folder cannot be listed ({exc.strerror}); make it readable")
        return
    for entry in entries:
        rel = f"{prefix}{entry.name}"
        scan.count += 1
        if scan.count > MAX_FILES:
            scan.refuse(rel, "too-many-files", f"the package holds more than {MAX_FILES} entries; remove some")
            return
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError as exc:
            scan.refuse(rel, "unreadable", f"cannot be read ({exc.strerror}); make it a readable regular file")
            continue
        if stat.S_ISLNK(info.st_mode):
            target = os.readlink(entry.path)
            scan.refuse(rel, "symlink", f"is a symbolic link to {target!r}; copy the real file in instead")
        elif stat.S_ISDIR(info.st_mode):
            if area is None and entry.name not in ("model", "src", "privatepkgs"):
                scan.refuse(rel, "not-allowed", f"folder is not part of a package; {AREA_FIX['']}")
                continue
            _walk(scan, Path(entry.path), rel + "/", depth + 1, area if area is not None else entry.name)
        elif stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
            scan.refuse(rel, "hard-link", f"has {info.st_nlink} hard links; copy the file in instead of linking it")
        elif stat.S_ISREG(info.st_mode):
            _scan_file(scan, Path(entry.path), rel, area if area is not None else "")
        else:
            scan.refuse(rel, "special-file", f"is a {_file_type(info.st_mode)}, not a regular file; remove it")


def _file_type(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "device file"
    return "special file"


def _open(path: Path) -> IO[bytes]:
    """Open a regular file without following a link or blocking on a FIFO swapped in after lstat."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _Refused("special-file", "changed into a non-regular file during the scan; remove it")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _scan_file(scan: _Scan, path: Path, rel: str, area: str) -> None:
    scan.regular.add(rel)
    suffix = path.suffix.lower()
    try:
        handle = _open(path)
    except OSError as exc:
        scan.refuse(rel, "unreadable", f"cannot be opened ({exc.strerror}); make it a readable regular file")
        return
    with handle:
        try:
            kind = _check_content(scan, handle, rel, suffix, area)
        except _Refused as refused:
            scan.refuse(rel, refused.reason, refused.message, refused.scanner)
            return
        handle.seek(0)
        digest = hashlib.sha256()
        size = 0
        for block in iter(lambda: handle.read(BLOCK), b""):
            digest.update(block)
            size += len(block)
    scan.files.append(ScannedFile(rel, kind, size, digest.hexdigest()))


def _check_content(scan: _Scan, handle: IO[bytes], rel: str, suffix: str, area: str) -> str:
    """The file's accepted kind, or _Refused. Pickle evidence outranks every other reason."""
    head = handle.read(4)
    handle.seek(0)
    # is_zipfile finds a central directory at the end too: a zip appended to another format
    # (which torch.load would open) is inspected like one at the start.
    if head == b"PK\x03\x04" or suffix == ".whl" or zipfile.is_zipfile(handle):
        _check_zip(handle, rel, suffix)
    handle.seek(0)
    if suffix in NUMPY_SUFFIXES:
        _check_numpy_file(handle, suffix)
    if suffix != ".safetensors":
        # A safetensors file starts with its header length, which may read as a protocol
        # header; its own validation below proves what it is.
        _check_not_pickle(handle, rel)
    handle.seek(0)
    if suffix in PICKLE_SUFFIXES:
        raise _Refused(
            "pickle-format",
            f"{suffix} is a pickle-bearing format (torch/joblib checkpoints run code when loaded); "
            "convert the weights to safetensors with save_pretrained(dir, safe_serialization=True)",
        )
    if PurePosixPath(rel).name in GIT_TEXT_FILES and area == "model":
        return _check_text(handle, ".txt")
    if suffix not in AREA_SUFFIXES[area]:
        what = f"{suffix} files" if suffix else "files without a suffix"
        raise _Refused("not-allowed", f"{what} are not allowed here; {AREA_FIX[area]}")
    if suffix == ".safetensors":
        _check_safetensors(handle)
        return "safetensors"
    if suffix == ".onnx":
        _check_onnx(scan, handle, rel)
        return "onnx"
    if suffix == ".whl":
        return "wheel"  # a zip: its members were sniffed above
    return _check_text(handle, suffix)


# -- pickles ------------------------------------------------------------------------------------------
def _check_not_pickle(handle: IO[bytes], rel: str) -> None:
    handle.seek(0)
    protocol = _pickle_protocol(handle)
    if protocol is not None:
        handle.seek(0)
        raise _Refused(
            "pickle",
            f"is a raw pickle stream ({protocol}); a pickle runs code when loaded: "
            "convert the weights to safetensors or ONNX",
            _picklescan_names(handle.read(PICKLESCAN_MAX_BYTES), rel),
        )


def _pickle_protocol(stream: IO[bytes]) -> str | None:
    """Why ``stream`` holds a pickle, or None. ``pickletools.genops`` reads opcodes only; nothing
    is imported or called. A stream is a pickle if it reaches STOP, parses PICKLE_SNIFF_OPCODES
    opcodes without an error, or still parses when the sniff limit cuts it."""
    bounded = _Bounded(stream, PICKLE_SNIFF_LIMIT)
    reader = io.BufferedReader(bounded)
    head = reader.peek(2)[:2]
    if len(head) == 2 and head[0] == 0x80 and head[1] <= 5:
        return f"protocol {head[1]} header 0x80"
    count = 0
    try:
        for opcode, _arg, _pos in pickletools.genops(cast(IO[bytes], _Untold(reader))):
            count += 1
            if opcode.name == "STOP":
                return f"protocol-0 opcodes, {count} up to STOP" if count > 1 else None
            if count >= PICKLE_SNIFF_OPCODES:
                return f"{count} pickle opcodes without an error"
    except Exception:  # any malformed opcode or argument: not a pickle stream, unless cut short
        return f"pickle opcodes past the {PICKLE_SNIFF_LIMIT:,}-byte sniff limit" if bounded.exhausted else None
    return None


class _Untold:
    """read and readline only: genops asks a stream with ``tell`` for positions, which an
    unseekable bounded stream cannot give."""

    def __init__(self, reader: io.BufferedIOBase) -> None:
        self.read = reader.read
        self.readline = reader.readline


class _Bounded(io.RawIOBase):
    """At most ``limit`` bytes of ``stream``; ``exhausted`` says whether the limit cut a read."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        super().__init__()
        self.stream = stream
        self.left = limit
        self.exhausted = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self.left <= 0:
            self.exhausted = self.exhausted or bool(self.stream.read(1))
            return 0
        data = self.stream.read(min(len(view), self.left))
        view[: len(data)] = data
        self.left -= len(data)
        return len(data)


def _picklescan_names(data: bytes, rel: str) -> str:
    """What picklescan says the pickle imports: named in the report, never trusted to clear it."""
    try:
        from picklescan.scanner import scan_pickle_bytes
    except ImportError:
        return "picklescan not installed (install cleanroom-console[ml]); verdict unchanged"
    try:
        result = scan_pickle_bytes(io.BytesIO(data[:PICKLESCAN_MAX_BYTES]), rel)
    except Exception as exc:  # picklescan's own parse error is a note, not a verdict
        return f"picklescan: could not parse ({type(exc).__name__})"
    names = sorted({f"{g.module}.{g.name} ({g.safety.value})" for g in result.globals})
    verdict = f"{result.issues_count} issue(s)"
    return f"picklescan: {verdict}; imports {', '.join(names) if names else 'nothing'}"


def _check_zip(handle: IO[bytes], rel: str, suffix: str) -> None:
    """A zip (torch checkpoint, npz, wheel) is refused if any member is a pickle or object array."""
    try:
        archive = zipfile.ZipFile(handle)
    except (zipfile.BadZipFile, OSError):
        if suffix == ".whl":
            raise _Refused("invalid-wheel", "is not a valid wheel (zip); rebuild it with `pip wheel`") from None
        return  # not a zip after all: the other checks decide
    with archive:
        members = archive.infolist()
        if len(members) > ZIP_MAX_MEMBERS:
            raise _Refused("too-many-files", f"zip holds more than {ZIP_MAX_MEMBERS} members; split it")
        for member in members:
            if member.is_dir():
                continue
            name = PurePosixPath(member.filename)
            with archive.open(member) as stream:
                pickled = _pickle_protocol(stream) is not None
            with archive.open(member) as stream:
                head = stream.read(PICKLESCAN_MAX_BYTES)
            if name.suffix in PICKLE_SUFFIXES or pickled:
                raise _Refused(
                    "pickle-in-zip",
                    f"zip archive holds pickle member '{member.filename}' (a torch-style checkpoint runs code "
                    "when loaded); convert the weights to safetensors",
                    _picklescan_names(head, f"{rel}:{member.filename}"),
                )
            if head[:4] == b"PK\x03\x04" or name.suffix in (".zip", ".npz", ".whl"):
                raise _Refused(
                    "nested-zip",
                    f"zip archive holds another archive '{member.filename}', which is not scanned; unpack it",
                )
            if name.suffix == ".npy" and _npy_has_objects(io.BytesIO(head)):
                raise _Refused(
                    "numpy-object",
                    f"member '{member.filename}' is a numpy object array (stored as a pickle); "
                    "store numeric tensors in safetensors",
                )


def _check_numpy_file(handle: IO[bytes], suffix: str) -> None:
    if suffix == ".npy" and _npy_has_objects(handle):
        raise _Refused(
            "numpy-object", "is a numpy object array (stored as a pickle); store numeric tensors in safetensors"
        )
    raise _Refused("not-allowed", f"{suffix} files are not allowed; store the tensors in safetensors")


def _npy_has_objects(handle: IO[bytes]) -> bool:
    """Read the .npy header with numpy's own parser (a literal, never unpickled)."""
    try:
        from numpy.lib import format as npy
    except ImportError:  # without numpy the file is still refused, by its suffix
        return False
    handle.seek(0)
    try:
        version = npy.read_magic(handle)
        header = npy.read_array_header_1_0(handle) if version == (1, 0) else npy.read_array_header_2_0(handle)
    except Exception:  # not an npy header: refused by suffix anyway
        return False
    return bool(header[2].hasobject)


# -- safetensors ---------------------------------------------------------------------------------------
def _check_safetensors(handle: IO[bytes]) -> None:
    """The header is 8 bytes of little-endian length, then that much JSON, then the tensors laid
    end to end: every offset pair must be in order, contiguous from 0, sized by dtype x shape, and
    end exactly at the end of the file (no hidden trailing payload)."""
    size = os.fstat(handle.fileno()).st_size
    prefix = handle.read(8)
    if len(prefix) < 8:
        raise _Refused("safetensors-header", "is shorter than a safetensors header; re-save it with safetensors")
    (length,) = struct.unpack("<Q", prefix)
    if length > SAFETENSORS_MAX_HEADER:
        raise _Refused(
            "safetensors-header",
            f"declares a {length:,}-byte header (limit {SAFETENSORS_MAX_HEADER:,}); re-save it with safetensors",
        )
    if 8 + length > size:
        raise _Refused("safetensors-header", "declares a header longer than the file; the file is truncated or forged")
    raw = handle.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise _Refused("safetensors-header", "header is not valid UTF-8 JSON; re-save it with safetensors") from None
    if not isinstance(header, dict):
        raise _Refused("safetensors-header", "header is not a JSON object; re-save it with safetensors")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _Refused("safetensors-header", "__metadata__ must map strings to strings; re-save it with safetensors")
    spans = []
    for name, tensor in header.items():
        spans.append((*_tensor_span(name, tensor), name))
    cursor = 0
    for begin, end, name in sorted(spans):
        if begin != cursor:
            what = "overlaps the previous tensor" if begin < cursor else "leaves a gap before it"
            raise _Refused("safetensors-header", f"tensor {name!r} {what}; the offsets are forged, re-save the file")
        cursor = end
    if cursor != size - 8 - length:
        raise _Refused(
            "safetensors-header",
            f"tensors end at byte {cursor:,} of a {size - 8 - length:,}-byte data section; "
            "the offsets overflow the file or hide trailing bytes, re-save the file",
        )


def _tensor_span(name: str, tensor: Any) -> tuple[int, int]:
    if not isinstance(tensor, dict):
        raise _Refused("safetensors-header", f"tensor {name!r} is not a JSON object; re-save the file")
    dtype, shape, offsets = tensor.get("dtype"), tensor.get("shape"), tensor.get("data_offsets")
    if dtype not in SAFETENSORS_DTYPES:
        raise _Refused("safetensors-header", f"tensor {name!r} has unknown dtype {dtype!r}; use a standard dtype")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise _Refused("safetensors-header", f"tensor {name!r} has an invalid shape; re-save the file")
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
        or offsets[0] > offsets[1]
    ):
        raise _Refused("safetensors-header", f"tensor {name!r} has invalid data_offsets; re-save the file")
    elements = 1
    for dimension in shape:
        elements *= dimension
    if offsets[1] - offsets[0] != elements * SAFETENSORS_DTYPES[dtype]:
        raise _Refused(
            "safetensors-header", f"tensor {name!r} offsets do not match its dtype and shape; re-save the file"
        )
    return offsets[0], offsets[1]


# -- ONNX -------------------------------------------------------------------------------------------
@cache
def supported_opset() -> int:
    """The highest default-domain opset the installed onnxruntime loads, found by asking it (its
    own table is not public): from the installed onnx's newest opset downwards."""
    import onnx
    from onnx import helper

    newest = int(onnx.defs.onnx_opset_version())
    try:
        import onnxruntime as ort
    except ImportError:
        return newest
    value = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    for version in range(newest, 6, -1):
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [value], [])
        graph.output.append(helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1]))
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", version)], ir_version=10)
        try:
            ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception:  # onnxruntime refuses an opset it does not know: try the one below
            continue
        return version
    return 7


def _check_onnx(scan: _Scan, handle: IO[bytes], rel: str) -> None:
    try:
        import onnx
        from onnx import external_data_helper
    except ImportError:
        raise _Refused("onnx-invalid", "cannot be checked: onnx is not installed (cleanroom-console[ml])") from None
    try:
        model = onnx.load_model_from_string(handle.read())
    except Exception as exc:  # protobuf's DecodeError and friends
        raise _Refused("onnx-invalid", f"is not a valid ONNX model ({type(exc).__name__}); re-export it") from None
    for opset in model.opset_import:
        if opset.domain not in ONNX_DOMAINS:
            raise _Refused(
                "onnx-domain",
                f"imports custom op domain {opset.domain!r}; only {', '.join(sorted(repr(d) for d in ONNX_DOMAINS))} "
                "run without custom kernels: re-export with standard ops",
            )
        newest = supported_opset() if opset.domain in ("", "ai.onnx") else None
        if opset.domain == "ai.onnx.ml":
            newest = int(onnx.defs.onnx_ml_opset_version())
        if newest is not None and opset.version > newest:
            raise _Refused(
                "onnx-opset",
                f"needs {opset.domain or 'ai.onnx'} opset {opset.version} but the clean room supports up to "
                f"{newest}; re-export with opset_version <= {newest}",
            )
    for node in _all_nodes(model.graph):
        if node.domain not in ONNX_DOMAINS:
            raise _Refused(
                "onnx-domain",
                f"node {node.name or node.op_type!r} uses custom op domain {node.domain!r}; "
                "re-export with standard ops",
            )
    folder = PurePosixPath(rel).parent
    if model.functions:
        raise _Refused(
            "onnx-domain",
            f"defines model-local functions ({', '.join(f.domain + '.' + f.name for f in model.functions)}); "
            "re-export without local functions (torch.onnx.export(..., dynamo=False))",
        )
    for tensor in _all_tensors(model.graph):
        if not external_data_helper.uses_external_data(tensor):
            continue
        entries = {entry.key: entry.value for entry in tensor.external_data}
        location = entries.get("location", "")
        target = PurePosixPath(location.replace("\\", "/"))
        if not location or target.is_absolute() or ".." in target.parts or ":" in location:
            raise _Refused(
                "onnx-external-data",
                f"tensor {tensor.name!r} reads external data from {location!r}, outside the package; "
                "keep external data files next to the model (a relative name without '..')",
            )
        try:
            end = int(entries.get("offset", "0")) + int(entries.get("length", "0"))
        except ValueError:
            raise _Refused(
                "onnx-external-data", f"tensor {tensor.name!r} has a non-numeric offset; re-export"
            ) from None
        key = str(folder / target) if str(folder) != "." else str(target)
        scan.external_data[key] = max(scan.external_data.get(key, 0), end)


def _all_nodes(graph: Any) -> Iterator[Any]:
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.HasField("g"):
                yield from _all_nodes(attribute.g)
            for subgraph in attribute.graphs:
                yield from _all_nodes(subgraph)


def _all_tensors(graph: Any) -> Iterator[Any]:
    """Every tensor that may carry external data: initializers, sparse ones, node attributes,
    in subgraphs too."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _all_tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _all_tensors(subgraph)


def _check_external_data(scan: _Scan) -> None:
    """Each external-data file must be a regular file the walk accepted, big enough for its
    tensors; its raw bytes are tensor data, so it is accepted as such (not as a model format)."""
    # refused for what it holds or is (a pickle, a link); "not-allowed" only meant an unknown suffix
    refused = {f.path for f in scan.findings if f.reason != "not-allowed"}
    for rel, end in sorted(scan.external_data.items()):
        if rel in refused:
            continue  # already refused (a symlink, a FIFO): the walk said why
        if rel not in scan.regular:
            scan.refuse(
                rel,
                "onnx-external-data",
                "is named as ONNX external data but is no regular file in the package; add it",
            )
            continue
        info = os.lstat(scan.root / rel)
        if info.st_size < end:
            scan.refuse(rel, "onnx-external-data", f"is shorter ({info.st_size:,} B) than its tensors need ({end:,} B)")
            continue
        scan.findings = [f for f in scan.findings if not (f.path == rel and f.reason == "not-allowed")]
        if not any(f.path == rel for f in scan.files):
            with _open(scan.root / rel) as handle:
                digest = hashlib.sha256()
                for block in iter(lambda: handle.read(BLOCK), b""):
                    digest.update(block)
            scan.files.append(ScannedFile(rel, "onnx-external-data", info.st_size, digest.hexdigest()))


# -- text ---------------------------------------------------------------------------------------------
def _check_text(handle: IO[bytes], suffix: str) -> str:
    size = os.fstat(handle.fileno()).st_size
    if size > TEXT_MAX_BYTES:
        raise _Refused("too-large", f"{size:,} bytes is over the {TEXT_MAX_BYTES:,}-byte limit for {suffix} files")
    try:
        text = handle.read().decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused("not-utf8", f"{suffix} file is not UTF-8 text; save it as UTF-8") from None
    if suffix == ".json":
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise _Refused("invalid-json", f"is not valid JSON ({exc.msg}, line {exc.lineno}); fix the file") from None
        return "json"
    return {".py": "python", ".yml": "yaml", ".yaml": "yaml"}.get(suffix, "text")
