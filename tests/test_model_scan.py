"""The allow-list scan: every malicious package of the corpus is flagged for its own reason, nothing
is ever loaded, and the project's own models pass with zero findings."""

from __future__ import annotations

import json
import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from core.onboarding.package import check_package
from core.onboarding.scan import ONNX_DOMAINS, scan_folder, supported_opset
from tests.cli_runner import cleanroom
from tests.model_package_corpus import CORPUS, Malicious, clean_package, global_pickle, torch_zip


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clean_package(tmp_path_factory.mktemp("clean") / "package")


def _planted(clean: Path, tmp_path: Path, case: Malicious) -> tuple[Path, Path]:
    root = tmp_path / "package"
    shutil.copytree(clean, root)
    marker = tmp_path / "payload-ran"
    case.plant(root, marker)
    return root, marker


def test_the_clean_package_passes(clean: Path) -> None:
    report = check_package(clean)
    assert report.ok, [f.one_line() for f in report.findings]
    kinds = {f.path: f.kind for f in report.scan.files}
    assert kinds["model/model.safetensors"] == "safetensors"
    assert kinds["src/inference.py"] == "python"


def test_the_corpus_is_big_enough_and_each_case_distinct() -> None:
    assert len(CORPUS) >= 13
    assert len({case.name for case in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=lambda case: case.name)
def test_each_malicious_package_is_flagged_for_its_reason(clean: Path, tmp_path: Path, case: Malicious) -> None:
    root, marker = _planted(clean, tmp_path, case)
    report = check_package(root)
    assert not report.ok
    assert report.scan.vulnerable
    flagged = [f for f in report.scan.findings if f.path == case.path]
    assert [f.reason for f in flagged] == [case.reason], [f.one_line() for f in report.findings]
    assert case.message in flagged[0].message
    assert flagged[0].one_line().startswith(f"{case.path}: ")
    assert "\n" not in flagged[0].one_line()
    assert case.path not in {f.path for f in report.scan.files}  # a refused file gets no accepted digest
    assert not marker.exists()  # the payload was read, never run


def test_the_whole_corpus_is_flagged(clean: Path, tmp_path: Path) -> None:
    flagged = 0
    for index, case in enumerate(CORPUS):
        root, _ = _planted(clean, tmp_path / str(index), case)
        flagged += scan_folder(root, package=True).vulnerable
    assert flagged / len(CORPUS) == 1.0


def test_picklescan_names_findings_but_its_pass_never_clears_a_file(clean: Path, tmp_path: Path) -> None:
    root = tmp_path / "package"
    shutil.copytree(clean, root)
    (root / "model" / "a.json").write_bytes(global_pickle("importlib", "import_module", "antigravity"))
    (root / "model" / "b.json").write_bytes(global_pickle("marshal", "loads", "x"))
    (root / "model" / "c.json").write_bytes(global_pickle("os", "system", "id"))
    (root / "model" / "d.json").write_bytes(global_pickle("pkgutil", "get_importer", "/tmp", protocol=2))
    findings = {f.path: f for f in scan_folder(root, package=True).findings}
    # measured: picklescan counts no issue for importlib, marshal and pkgutil payloads; the scan refuses them
    assert "0 issue(s)" in str(findings["model/a.json"].scanner)
    assert "importlib.import_module" in str(findings["model/a.json"].scanner)
    assert "0 issue(s)" in str(findings["model/b.json"].scanner)
    assert "1 issue(s); imports os.system (dangerous)" in str(findings["model/c.json"].scanner)
    assert "0 issue(s); imports pkgutil.get_importer (suspicious)" in str(findings["model/d.json"].scanner)
    assert {f.reason for f in findings.values()} == {"pickle"}


def test_a_torch_zip_is_flagged_whatever_its_suffix(clean: Path, tmp_path: Path) -> None:
    root = tmp_path / "package"
    shutil.copytree(clean, root)
    torch_zip(root / "model" / "weights.json", global_pickle("os", "system", "id"))
    (finding,) = scan_folder(root, package=True).findings
    assert (finding.path, finding.reason) == ("model/weights.json", "pickle-in-zip")


def test_a_fifo_does_not_block_the_scan(clean: Path, tmp_path: Path) -> None:
    root = tmp_path / "package"
    shutil.copytree(clean, root)
    os.mkfifo(root / "model" / "model.onnx")
    started = time.monotonic()
    (finding,) = scan_folder(root, package=True).findings
    assert (
        time.monotonic() - started < 60
    )  # an open() on the FIFO would block for ever (the 5 s figure: benchmarks/model_scan.py)
    assert (finding.path, finding.reason) == ("model/model.onnx", "special-file")


def test_a_symlinked_folder_is_refused_and_never_walked(clean: Path, tmp_path: Path) -> None:
    root = tmp_path / "package"
    shutil.copytree(clean, root)
    (root / "model" / "etc").symlink_to("/etc", target_is_directory=True)
    report = scan_folder(root, package=True)
    assert [(f.path, f.reason) for f in report.findings] == [("model/etc", "symlink")]
    assert not any(f.path.startswith("model/etc/") for f in report.files)


def test_onnx_external_data_inside_the_folder_is_accepted(tmp_path: Path) -> None:
    from tests.model_package_corpus import onnx_with_initializer

    onnx_with_initializer(tmp_path / "model.onnx", location="model.onnx.data")
    (tmp_path / "model.onnx.data").write_bytes(b"\x00" * 8)
    report = scan_folder(tmp_path)
    assert not report.findings, [f.one_line() for f in report.findings]
    assert {f.path: f.kind for f in report.files}["model.onnx.data"] == "onnx-external-data"


def test_onnx_external_data_behind_a_symlinked_folder_is_refused(tmp_path: Path) -> None:
    from tests.model_package_corpus import onnx_with_initializer

    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "w.data").write_bytes(b"\x00" * 8)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "d").symlink_to(tmp_path / "outside", target_is_directory=True)
    onnx_with_initializer(tmp_path / "model" / "model.onnx", location="d/w.data")
    reasons = {(f.path, f.reason) for f in scan_folder(tmp_path / "model").findings}
    assert reasons == {("d", "symlink"), ("d/w.data", "onnx-external-data")}


def test_files_off_the_allow_list_are_refused(tmp_path: Path) -> None:
    (tmp_path / "weights.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    (tmp_path / "notes").write_text("plain")
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    findings = {f.path: f.reason for f in scan_folder(tmp_path).findings}
    assert findings == {
        "weights.h5": "not-allowed",
        "notes": "not-allowed",
        "bad.json": "invalid-json",
        "latin1.txt": "not-utf8",
    }


def test_the_standard_op_domains_are_documented() -> None:
    assert {"", "ai.onnx", "ai.onnx.ml", "com.microsoft"} == ONNX_DOMAINS
    assert 17 <= supported_opset() < 99


def test_cli_scan_prints_one_line_per_finding_and_exits_non_zero(clean: Path, tmp_path: Path) -> None:
    root = tmp_path / "package"
    shutil.copytree(clean, root)
    (root / "model" / "model.pkl").write_bytes(global_pickle("os", "system", "id"))
    (root / "model" / "hook.py").write_text("print(1)\n")
    outcome = cleanroom("model", "scan", root)
    assert outcome.code == 2
    lines = outcome.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("model/hook.py: .py files are not allowed here")
    assert lines[1].startswith("model/model.pkl: is a raw pickle stream")
    assert outcome.stderr.strip() == (f"error: '{root}' is vulnerable: 2 finding(s); fix each finding listed above")
    as_json = cleanroom("model", "scan", root, "-o", "json")
    assert as_json.code == 2
    document = json.loads(as_json.stdout)
    assert document["vulnerable"] is True
    assert [f["reason"] for f in document["findings"]] == ["not-allowed", "pickle"]
    reasons = cleanroom("model", "scan", root, "--query", "findings[].reason")
    assert json.loads(reasons.stdout) == ["not-allowed", "pickle"]


def test_cli_scan_of_a_clean_package_exits_zero(clean: Path) -> None:
    outcome = cleanroom("model", "scan", clean, "-o", "json")
    assert outcome.code == 0, outcome.stderr
    assert json.loads(outcome.stdout)["vulnerable"] is False


def test_cli_scan_of_a_missing_path_names_it(tmp_path: Path) -> None:
    outcome = cleanroom("model", "scan", tmp_path / "nope")
    assert outcome.code == 3
    assert (
        outcome.stderr.strip()
        == f"error: '{tmp_path / 'nope'}' does not exist; pass a model package, model folder or file"
    )


def test_the_shipped_minilm_folder_has_no_findings() -> None:
    """The offline base model (90 MB of safetensors) is read, never run: cheap enough to test always."""
    from core.ml.model_preparation import offline_base_dir

    report = scan_folder(offline_base_dir())
    assert not report.findings, [f.one_line() for f in report.findings]
    weights = {f.path: f for f in report.files}["model.safetensors"]
    assert weights.kind == "safetensors" and weights.size > 80_000_000
    assert not stat.S_ISLNK(os.lstat(offline_base_dir() / "model.safetensors").st_mode)


def test_a_pickle_hiding_its_call_behind_a_huge_argument_is_flagged(tmp_path: Path) -> None:
    """The sniff reads opcodes from the stream, so a 2 MB string before REDUCE hides nothing."""
    (tmp_path / "vocab.txt").write_bytes(global_pickle("os", "system", "true " + "a" * 2_000_000, protocol=0))
    (finding,) = scan_folder(tmp_path).findings
    assert (finding.path, finding.reason) == ("vocab.txt", "pickle")


def test_a_zip_appended_to_another_file_is_inspected(tmp_path: Path) -> None:
    torch_zip(tmp_path / "checkpoint.zip", global_pickle("os", "system", "id"))
    (tmp_path / "config.json").write_bytes(b'{"a": 1}' + (tmp_path / "checkpoint.zip").read_bytes())
    (tmp_path / "checkpoint.zip").unlink()
    (finding,) = scan_folder(tmp_path).findings
    assert (finding.path, finding.reason) == ("config.json", "pickle-in-zip")


def test_an_archive_inside_an_archive_is_refused(tmp_path: Path) -> None:
    import zipfile

    torch_zip(tmp_path / "inner.pt", global_pickle("os", "system", "id"))
    with zipfile.ZipFile(tmp_path / "helper-1.0-py3-none-any.whl", "w") as archive:
        archive.write(tmp_path / "inner.pt", "helper/inner.zip")
    (tmp_path / "inner.pt").unlink()
    (finding,) = scan_folder(tmp_path).findings
    assert (finding.path, finding.reason) == ("helper-1.0-py3-none-any.whl", "nested-zip")


def test_a_hard_link_is_refused(tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("secret\n")
    (tmp_path / "model").mkdir()
    os.link(tmp_path / "outside.txt", tmp_path / "model" / "vocab.txt")
    (finding,) = scan_folder(tmp_path / "model").findings
    assert (finding.path, finding.reason) == ("vocab.txt", "hard-link")
    assert finding.message == "has 2 hard links; copy the file in instead of linking it"


def test_a_model_local_function_domain_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    function = helper.make_function(
        "evil.local", "Hook", ["x"], ["y"], [helper.make_node("Identity", ["x"], ["y"])], [helper.make_opsetid("", 17)]
    )
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], functions=[function], ir_version=10)
    onnx.save(model, str(tmp_path / "model.onnx"))
    (finding,) = scan_folder(tmp_path).findings
    assert finding.reason == "onnx-domain"
    assert "model-local functions (evil.local.Hook)" in finding.message
