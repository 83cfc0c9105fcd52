"""Clean and malicious model packages, built byte by byte for the scan tests; never loaded.

Every pickle here is assembled from opcodes (no ``pickle.dumps`` of a live callable), and each
payload would ``touch`` a marker file if anything ever unpickled it, so a test can prove the scan
only read it. The clean package has real safetensors weights (written by the safetensors
library) and the project's own text-classification wrapper.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.onboarding import wrappers

WRAPPER_SOURCE = Path(wrappers.__file__).parent / "text_classification.py"


def global_pickle(module: str, name: str, arg: str, *, protocol: int = 4) -> bytes:
    """A pickle calling ``module.name(arg)`` when loaded, in the opcodes of ``protocol``."""
    if protocol == 0:
        return f"c{module}\n{name}\n(V{arg}\ntR.".encode()
    if protocol == 2:
        text = arg.encode()
        return b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"X" + struct.pack("<I", len(text)) + text + b"\x85R."

    def short(value: str) -> bytes:
        raw = value.encode()
        return b"\x8c" + bytes([len(raw)]) + raw + b"\x94"

    body = short(module) + short(name) + b"\x93\x94" + short(arg) + b"\x85\x94R\x94."
    frame = b"\x95" + struct.pack("<Q", len(body))
    return b"\x80\x04" + frame + body


def safetensors_bytes(header: dict[str, object], data: bytes, *, length: int | None = None) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw) if length is None else length) + raw + data


def torch_zip(path: Path, payload: bytes) -> None:
    """The layout ``torch.save`` writes: a zip whose ``archive/data.pkl`` is the pickle."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/version", "3\n")
        archive.writestr("archive/data/0", b"\x00" * 16)


def onnx_with_initializer(path: Path, *, location: str | None = None, domain: str = "", opset: int = 17) -> None:
    """A one-node ONNX model; ``location`` stores its initializer as external data there."""
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    if location is not None:
        weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2])
        weight.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", "8")):
            entry = weight.external_data.add()
            entry.key, entry.value = key, value
    node = helper.make_node("Add", ["x", "w"], ["y"], domain=domain)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        initializer=[weight],
    )
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    path.write_bytes(helper.make_model(graph, opset_imports=imports, ir_version=10).SerializeToString())
    assert onnx.load_model_from_string(path.read_bytes()).graph.node  # parses as ONNX


def clean_package(root: Path) -> Path:
    """A valid package: real safetensors weights, the project's wrapper, settings, requirements."""
    from safetensors.numpy import save_file

    (root / "model").mkdir(parents=True)
    (root / "src").mkdir()
    save_file(
        {"embeddings": np.arange(12, dtype=np.float32).reshape(3, 4), "bias": np.zeros(2, np.int64)},
        str(root / "model" / "model.safetensors"),
    )
    (root / "model" / "config.json").write_text(json.dumps({"id2label": {"0": "neg", "1": "pos"}}))
    (root / "model" / "vocab.txt").write_text("[PAD]\n[UNK]\ncat\ndog\n")
    (root / "src" / "inference.py").write_bytes(WRAPPER_SOURCE.read_bytes())
    (root / "src" / "requirements.txt").write_text("# nothing beyond the clean room's image\n")
    (root / "src" / "settings.yml").write_text(
        'python: "3.11"\ntask: text-classification\nwrapper: TextClassifier\nsample_post_data:\n  text: fine\n'
    )
    return root


@dataclass(frozen=True)
class Malicious:
    """One malicious package: how to plant it, the file the scan must name, and why."""

    name: str
    plant: Callable[[Path, Path], None]  # (package root, marker file a loaded payload would create)
    path: str
    reason: str
    message: str


def _write(relative: str, content: Callable[[Path], bytes]) -> Callable[[Path, Path], None]:
    def plant(root: Path, marker: Path) -> None:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content(marker))

    return plant


def _touch(marker: Path) -> str:
    return f"touch {marker}"


def _npy_object(root: Path, marker: Path) -> None:
    np.save(root / "model" / "table.npy", np.array([{"a": 1}, "text"], dtype=object), allow_pickle=True)


def _npz_object(root: Path, marker: Path) -> None:
    np.savez(root / "model" / "tables.npz", ok=np.zeros(2), bad=np.array([None, 1], dtype=object))


def _symlink(root: Path, marker: Path) -> None:
    (root / "model" / "extra.json").symlink_to("/etc/passwd")


def _fifo(root: Path, marker: Path) -> None:
    os.mkfifo(root / "model" / "stream.json")


def _external(location: str) -> Callable[[Path, Path], None]:
    return lambda root, marker: onnx_with_initializer(root / "model" / "model.onnx", location=location)


F32x2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}

CORPUS: tuple[Malicious, ...] = (
    Malicious(
        "os-system-reduce",
        _write("model/model.pkl", lambda m: global_pickle("os", "system", _touch(m))),
        "model/model.pkl",
        "pickle",
        "raw pickle stream (protocol 4",
    ),
    Malicious(
        "importlib-payload-as-json",
        _write("model/extra.json", lambda m: global_pickle("importlib", "import_module", "antigravity")),
        "model/extra.json",
        "pickle",
        "raw pickle stream",
    ),
    Malicious(
        "marshal-payload-protocol-0-as-vocab",
        _write("model/merges.txt", lambda m: global_pickle("marshal", "loads", "c\x00", protocol=0)),
        "model/merges.txt",
        "pickle",
        "protocol-0 opcodes",
    ),
    Malicious(
        "pkgutil-payload-protocol-2",
        _write("model/special.json", lambda m: global_pickle("pkgutil", "get_importer", "/tmp", protocol=2)),
        "model/special.json",
        "pickle",
        "protocol 2 header 0x80",
    ),
    Malicious(
        "pip-payload-as-readme",
        _write("model/README.md", lambda m: global_pickle("pip", "main", "install evil")),
        "model/README.md",
        "pickle",
        "raw pickle stream",
    ),
    Malicious(
        "torch-zip-bin",
        lambda root, m: torch_zip(root / "model" / "pytorch_model.bin", global_pickle("os", "system", _touch(m))),
        "model/pytorch_model.bin",
        "pickle-in-zip",
        "pickle member 'archive/data.pkl'",
    ),
    Malicious(
        "torch-zip-pt",
        lambda root, m: torch_zip(root / "model" / "weights.pt", global_pickle("os", "system", _touch(m))),
        "model/weights.pt",
        "pickle-in-zip",
        "torch-style checkpoint",
    ),
    Malicious(
        "torch-zip-ckpt",
        lambda root, m: torch_zip(root / "model" / "last.ckpt", global_pickle("os", "system", _touch(m))),
        "model/last.ckpt",
        "pickle-in-zip",
        "archive/data.pkl",
    ),
    Malicious("numpy-object-npy", _npy_object, "model/table.npy", "numpy-object", "numpy object array"),
    Malicious("numpy-object-in-npz", _npz_object, "model/tables.npz", "numpy-object", "member 'bad.npy'"),
    Malicious(
        "joblib-named-pickle",
        _write("model/classifier.joblib", lambda m: global_pickle("os", "system", _touch(m), protocol=2)),
        "model/classifier.joblib",
        "pickle",
        "convert the weights to safetensors",
    ),
    Malicious(
        "safetensors-overflowing-offset",
        _write("model/model.safetensors", lambda m: safetensors_bytes({"w": F32x2}, b"\x00" * 4)),
        "model/model.safetensors",
        "safetensors-header",
        "overflow the file",
    ),
    Malicious(
        "safetensors-overlapping-offsets",
        _write(
            "model/model.safetensors",
            lambda m: safetensors_bytes(
                {"a": F32x2, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\x00" * 12
            ),
        ),
        "model/model.safetensors",
        "safetensors-header",
        "tensor 'b' overlaps the previous tensor",
    ),
    Malicious(
        "safetensors-huge-header",
        _write("model/model.safetensors", lambda m: safetensors_bytes({"w": F32x2}, b"\x00" * 8, length=1 << 40)),
        "model/model.safetensors",
        "safetensors-header",
        "1,099,511,627,776-byte header",
    ),
    Malicious(
        "safetensors-unknown-dtype",
        _write(
            "model/model.safetensors",
            lambda m: safetensors_bytes({"w": {"dtype": "OBJ", "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 8),
        ),
        "model/model.safetensors",
        "safetensors-header",
        "unknown dtype 'OBJ'",
    ),
    Malicious(
        "onnx-external-data-traversal",
        _external("../../etc/passwd"),
        "model/model.onnx",
        "onnx-external-data",
        "reads external data from '../../etc/passwd', outside the package",
    ),
    Malicious(
        "onnx-external-data-absolute",
        _external("/etc/passwd"),
        "model/model.onnx",
        "onnx-external-data",
        "'/etc/passwd', outside the package",
    ),
    Malicious(
        "onnx-custom-op-domain",
        lambda root, m: onnx_with_initializer(root / "model" / "model.onnx", domain="evil.ops"),
        "model/model.onnx",
        "onnx-domain",
        "custom op domain 'evil.ops'",
    ),
    Malicious(
        "onnx-unsupported-opset",
        lambda root, m: onnx_with_initializer(root / "model" / "model.onnx", opset=99),
        "model/model.onnx",
        "onnx-opset",
        "needs ai.onnx opset 99 but the clean room supports up to",
    ),
    Malicious("symlink-to-etc-passwd", _symlink, "model/extra.json", "symlink", "symbolic link to '/etc/passwd'"),
    Malicious("fifo", _fifo, "model/stream.json", "special-file", "is a FIFO"),
    Malicious(
        "python-hidden-in-model",
        _write("model/tokenizer_hook.py", lambda m: b"import os\nos.system('id')\n"),
        "model/tokenizer_hook.py",
        "not-allowed",
        ".py files are not allowed here; model/ holds only",
    ),
)
