"""Model packages: scaffolding from a prepared ONNX classifier, the check (requirements, settings,
wrapper class), the loader that runs only checked code, and the `cleanroom model package` verbs."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pytest

from core.errors import AccessDeniedError, ConflictError, IntegrityError, InvalidInputError
from core.onboarding.package import check_package
from core.onboarding.scaffold import scaffold_package
from core.onboarding.wrapper import ModelWrapper, load_wrapper
from tests.cli_runner import cleanroom
from tests.model_package_corpus import clean_package, global_pickle


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT through the project's own preparation: safetensors + ONNX fp32/int8."""
    from core.ml.model_preparation import prepare
    from tests.ml_tiny_model import build_tiny_base

    root = tmp_path_factory.mktemp("prepared")
    build_tiny_base(root / "base")
    return prepare(root / "base", root / "model", max_length=32).output


@pytest.fixture(scope="module")
def package(prepared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scaffold_package(prepared, tmp_path_factory.mktemp("pkg") / "package", task="text-classification")


@pytest.fixture
def clean(tmp_path: Path) -> Path:
    return clean_package(tmp_path / "package")


def _problems(root: Path) -> list[tuple[str, str, str]]:
    return [(f.path, f.reason, f.message) for f in check_package(root).findings]


# -- the project's own models pass ----------------------------------------------------------------
def test_the_projects_own_models_have_zero_findings(prepared: Path) -> None:
    from core.onboarding.scan import scan_folder

    for folder in (prepared / "pytorch", prepared / "onnx"):
        report = scan_folder(folder)
        assert not report.findings, [f.one_line() for f in report.findings]
    kinds = {f.path: f.kind for f in scan_folder(prepared / "onnx").files}
    assert kinds["model.onnx"] == kinds["model.int8.onnx"] == "onnx"  # int8 needs com.microsoft ops
    assert {f.path: f.kind for f in scan_folder(prepared / "pytorch").files}["model.safetensors"] == "safetensors"


def test_a_scaffolded_package_passes_and_serves_like_the_inference_server(package: Path, prepared: Path) -> None:
    from containers.inference_server.classifier import OnnxClassifier

    report = check_package(package)
    assert report.ok, [f.one_line() for f in report.findings]
    assert report.wrapper_class == "TextClassifier"
    assert report.settings["task"] == "text-classification"
    assert report.requirements == ()
    assert "lists nothing" in report.notes[0]
    wrapper = load_wrapper(report)
    assert isinstance(wrapper, ModelWrapper)
    texts = ["a brilliant and moving film", "dull boring messy plot", "the acting was quite good"]
    outputs = wrapper.inference_batch([{"text": t} for t in texts])
    expected = OnnxClassifier(prepared, threads=1).classify(texts)
    assert [o["label"] for o in outputs] == [p.label for p in expected]
    assert [o["score"] for o in outputs] == pytest.approx([p.score for p in expected], abs=1e-5)
    single = wrapper.inference(report.settings["sample_post_data"])
    assert set(single) == set(wrapper.output_schema()["required"])
    assert single["label"] in wrapper.output_schema()["properties"]["label"]["enum"]
    assert wrapper.input_schema()["properties"]["text"]["maxLength"] == 1000
    with pytest.raises(ValueError, match="a request is"):
        wrapper.inference({"text": "x" * 1001})


def test_the_source_digest_pins_every_src_file(package: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(package, copy)
    before = check_package(copy).source_sha256
    assert before == check_package(package).source_sha256
    with (copy / "src" / "inference.py").open("a") as handle:
        handle.write("# changed\n")
    assert check_package(copy).source_sha256 != before


# -- the loader runs only checked code ------------------------------------------------------------
def test_the_loader_refuses_a_package_that_failed(clean: Path, tmp_path: Path) -> None:
    marker = tmp_path / "wrapper-ran"
    (clean / "src" / "inference.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    report = check_package(clean)
    with pytest.raises(AccessDeniedError, match="did not pass its check .1 finding.s..; its code is not run"):
        load_wrapper(report)
    assert not marker.exists()


def test_the_loader_refuses_a_wrapper_changed_after_the_check(package: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(package, copy)
    report = check_package(copy)
    marker = tmp_path / "swapped-code-ran"
    source = (copy / "src" / "inference.py").read_text()
    (copy / "src" / "inference.py").write_text(f"open({str(marker)!r}, 'w').close()\n" + source)
    with pytest.raises(IntegrityError, match="src/inference.py of .* changed after it was checked"):
        load_wrapper(report)
    assert not marker.exists()


# -- requirements ---------------------------------------------------------------------------------
HASH = "a" * 64


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("numpy", "line 1: 'numpy' is not pinned; write name==version --hash=sha256:<wheel hash>"),
        ("numpy>=1.26 --hash=sha256:" + HASH, "line 1: 'numpy>=1.26' is not pinned"),
        ("numpy==2.1.0", "line 1: numpy==2.1.0 has no --hash=sha256:; add one"),
        ("numpy==2.1.0 --hash=md5:abc", "line 1: '--hash=md5:abc' is not a --hash=sha256:<64 hex>"),
        ("--index-url https://example.invalid/simple", "line 1: option --index-url is not allowed"),
        ("-e git+https://example.invalid/x.git#egg=x", "line 1: option -e is not allowed"),
        ("https://example.invalid/x.whl --hash=sha256:" + HASH, "line 1: wheel https://example.invalid/x.whl is not"),
    ],
)
def test_unpinned_requirements_are_refused(clean: Path, line: str, message: str) -> None:
    (clean / "src" / "requirements.txt").write_text(line + "\n")
    problems = _problems(clean)
    assert any(p[:2] == ("src/requirements.txt", "requirements") and message in p[2] for p in problems), problems


def test_pinned_requirements_with_continuations_pass(clean: Path) -> None:
    (clean / "src" / "requirements.txt").write_text(
        f"# pinned\nregex==2024.9.11 \\\n    --hash=sha256:{HASH} \\\n    --hash=sha256:{'b' * 64}\n"
    )
    report = check_package(clean)
    assert report.ok, [f.one_line() for f in report.findings]
    assert report.requirements == ("regex==2024.9.11",)


def _wheel(path: Path, members: dict[str, bytes]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_private_wheels_must_be_pinned_by_their_hash(clean: Path) -> None:
    digest = _wheel(clean / "privatepkgs" / "helper-1.0-py3-none-any.whl", {"helper/__init__.py": b"X = 1\n"})
    problems = _problems(clean)
    assert problems == [
        (
            "privatepkgs/helper-1.0-py3-none-any.whl",
            "requirements",
            "is not pinned in src/requirements.txt; add ./privatepkgs/helper-1.0-py3-none-any.whl "
            f"--hash=sha256:{digest}",
        )
    ]
    (clean / "src" / "requirements.txt").write_text(f"./privatepkgs/helper-1.0-py3-none-any.whl --hash=sha256:{HASH}\n")
    assert ("src/requirements.txt", "requirements") in [p[:2] for p in _problems(clean)]
    (clean / "src" / "requirements.txt").write_text(
        f"./privatepkgs/helper-1.0-py3-none-any.whl --hash=sha256:{digest}\n"
    )
    assert _problems(clean) == []


def test_a_private_wheel_holding_a_pickle_is_vulnerable(clean: Path) -> None:
    digest = _wheel(
        clean / "privatepkgs" / "evil-1.0-py3-none-any.whl",
        {"evil/__init__.py": b"", "evil/state.pkl": global_pickle("os", "system", "id")},
    )
    (clean / "src" / "requirements.txt").write_text(f"./privatepkgs/evil-1.0-py3-none-any.whl --hash=sha256:{digest}\n")
    report = check_package(clean)
    assert [(f.path, f.reason) for f in report.scan.findings] == [
        ("privatepkgs/evil-1.0-py3-none-any.whl", "pickle-in-zip")
    ]


# -- settings.yml ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("python: 3.11\ntask: text-classification\nsample_post_data: {text: a}\n", "python is 3.11; give the version"),
        ('python: "3.11"\ntask: painting\nsample_post_data: {text: a}\n', "task is 'painting'; use one of"),
        ('python: "3.11"\ntask: text-classification\n', "sample_post_data is missing or not a mapping"),
        (
            'python: "3.11"\ntask: text-classification\nsample_post_data: {text: a}\nextra: 1\n',
            "unknown key(s) extra",
        ),
        ("a: &x [1, 2]\nb: *x\n", "uses YAML aliases (*name); write each value out"),
        ("python: [unclosed\n", "is not valid YAML at line"),
        ("- just\n- a list\n", "is not a mapping"),
        ("!!python/object/apply:os.system ['id']\n", "is not valid YAML"),
    ],
)
def test_bad_settings_are_refused(clean: Path, text: str, message: str) -> None:
    (clean / "src" / "settings.yml").write_text(text)
    problems = _problems(clean)
    assert any(p[:2] == ("src/settings.yml", "settings") and message in p[2] for p in problems), problems


# -- the wrapper class and the layout -------------------------------------------------------------
def test_the_wrapper_class_is_found_without_running_the_code(clean: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    (clean / "src" / "inference.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Half:\n    def init(self, model_dir): ...\n"
    )
    problems = _problems(clean)
    assert ("src/inference.py", "wrapper", "has no class TextClassifier (settings.yml wrapper:)") in problems
    (clean / "src" / "settings.yml").write_text('python: "3.11"\ntask: text-classification\nsample_post_data: {}\n')
    (message,) = [p[2] for p in _problems(clean) if p[1] == "wrapper"]
    assert message.startswith("has no class defining all of init, convert_input")
    (clean / "src" / "inference.py").write_text("def broken(:\n")
    (message,) = [p[2] for p in _problems(clean) if p[1] == "wrapper"]
    assert message.startswith("is not valid Python (line 1")
    assert not marker.exists()


def test_missing_parts_are_named(tmp_path: Path) -> None:
    (tmp_path / "pkg" / "model").mkdir(parents=True)
    assert _problems(tmp_path / "pkg") == [
        ("src/inference.py", "missing", "is missing; add the wrapper (`cleanroom model package init` writes one)"),
        (
            "src/requirements.txt",
            "missing",
            "is missing; add it, empty if the clean room's image holds everything the wrapper imports",
        ),
        ("src/settings.yml", "missing", "is missing; add python, task and sample_post_data"),
        ("model/", "missing", "holds no safetensors or ONNX weights; add the model"),
    ]


def test_unknown_top_level_entries_are_refused(clean: Path) -> None:
    (clean / "setup.py").write_text("print(1)\n")
    (clean / "hooks").mkdir()
    assert [p[:2] for p in _problems(clean)] == [("hooks", "not-allowed"), ("setup.py", "not-allowed")]


# -- scaffolding refusals -------------------------------------------------------------------------
def test_init_refuses_a_folder_without_onnx(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    with pytest.raises(
        InvalidInputError, match="holds no model.onnx with tokenizer.json; run `cleanroom model prepare"
    ):
        scaffold_package(tmp_path / "weights", tmp_path / "out", task="text-classification")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["weights"]  # no partial folder left behind


def test_init_refuses_an_unknown_task_and_a_non_empty_output(prepared: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="--task 'painting' cannot be scaffolded yet"):
        scaffold_package(prepared, tmp_path / "out", task="painting")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(ConflictError, match="output folder .* is not empty"):
        scaffold_package(prepared, tmp_path / "busy", task="text-classification")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["busy"]


def test_init_refuses_a_symlinked_model_file(prepared: Path, tmp_path: Path) -> None:
    source = tmp_path / "onnx"
    shutil.copytree(prepared / "onnx", source)
    (source / "config.json").unlink()
    (source / "config.json").symlink_to("/etc/passwd")
    with pytest.raises(InvalidInputError, match="config.json' is not a regular file"):
        scaffold_package(source, tmp_path / "out", task="text-classification")
    assert not (tmp_path / "out").exists()


# -- the verbs ------------------------------------------------------------------------------------
def test_cli_package_init_and_check(prepared: Path, tmp_path: Path) -> None:
    created = cleanroom("model", "package", "init", "--from-model", prepared, "--output-dir", tmp_path / "pkg")
    assert created.code == 0, created.stderr
    assert created.stdout.startswith(f"wrote model package {tmp_path / 'pkg'} (wrapper TextClassifier")
    checked = cleanroom("model", "package", "check", tmp_path / "pkg", "-o", "json")
    assert checked.code == 0, checked.stderr
    document = json.loads(checked.stdout)
    assert document["ok"] is True and document["wrapperClass"] == "TextClassifier"
    query = cleanroom("model", "package", "check", tmp_path / "pkg", "--query", "sourceSha256")
    assert query.stdout.strip() == document["sourceSha256"]


def test_cli_package_check_lists_each_finding_and_exits_2(clean: Path) -> None:
    (clean / "model" / "model.pkl").write_bytes(global_pickle("os", "system", "id"))
    (clean / "src" / "requirements.txt").write_text("numpy\n")
    outcome = cleanroom("model", "package", "check", clean)
    assert outcome.code == 2
    lines = outcome.stdout.strip().splitlines()
    assert lines[0].startswith("model/model.pkl: is a raw pickle stream")
    assert (
        lines[1]
        == "src/requirements.txt: line 1: 'numpy' is not pinned; write name==version --hash=sha256:<wheel hash>"
    )
    assert lines[2] == "src/requirements.txt: line 1: numpy has no --hash=sha256:; add one"
    assert len(lines) == 3
    assert outcome.stderr.strip() == (
        f"error: model package '{clean}' fails its check: 3 finding(s); fix each finding listed above"
    )


@pytest.mark.smoke
def test_the_shipped_minilm_as_a_package(tmp_path: Path) -> None:
    """The real MiniLM: prepared, packaged, checked with zero findings, loaded and served."""
    from core.ml.model_preparation import prepare

    prepared = prepare(None, tmp_path / "minilm").output
    report = check_package(scaffold_package(prepared, tmp_path / "package", task="text-classification"))
    assert report.ok, [f.one_line() for f in report.findings]
    wrapper = load_wrapper(report)
    (output,) = wrapper.inference_batch([report.settings["sample_post_data"]])
    assert output["label"] in ("neg", "pos") and 0 <= output["score"] <= 1
