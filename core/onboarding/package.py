"""A model package: the layout a provider brings, and ``check_package`` over it.

::

    model/                 safetensors or ONNX weights (+ tokenizer/config JSON, vocabularies)
    src/inference.py       a class implementing core.onboarding.wrapper.ModelWrapper
    src/requirements.txt   every requirement pinned ``name==version --hash=sha256:...``
    src/settings.yml       python version, task, sample_post_data (and optionally the wrapper class)
    privatepkgs/*.whl      optional offline wheels, each pinned by its hash in requirements.txt

The check never runs the package's code: the scan (core.onboarding.scan) reads every byte under
the allow-list, settings.yml is read with ``yaml.safe_load`` (aliases refused), and the wrapper
class is found in the syntax tree of ``src/inference.py``.

Requirements are installed offline inside the clean room, so only what can be verified there is
accepted: a hash-pinned release or a hash-pinned wheel in ``privatepkgs/``. The hashes of the
packages a local venv has installed cannot be known offline (pip keeps per-file hashes, not the
wheel's), so a package that needs nothing beyond the clean room's inference image (onnxruntime,
tokenizers, numpy) lists no requirement at all; the check says so in its notes.
"""

from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from core.errors import InvalidInputError, NotFoundError
from core.onboarding.request_schema import RecordSchema
from core.onboarding.scan import Finding, ScanReport, scan_folder
from core.onboarding.wrapper import WRAPPER_FILE, WRAPPER_METHODS

REQUIREMENTS_FILE = "src/requirements.txt"
SETTINGS_FILE = "src/settings.yml"
SETTINGS_MAX_BYTES = 64 * 1024
TASKS = frozenset({"text-classification", "token-classification", "summarization", "text-generation"})
SETTINGS_KEYS = frozenset({"python", "task", "sample_post_data", "wrapper"})
# What the clean room's inference image already holds (containers/inference_server/requirements.txt).
IMAGE_PACKAGES = ("onnxruntime", "tokenizers", "numpy")
_PINNED = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[A-Za-z0-9][A-Za-z0-9.+!-]*$")
_HASH = re.compile(r"^--hash=sha256:([0-9a-f]{64})$")
_PYTHON = re.compile(r"^3\.\d{1,2}$")


@dataclass(frozen=True)
class PackageReport:
    """What ``check_package`` found. ``source_sha256`` digests every file of ``src/`` (path and
    content): the value a contract pins so the wrapper is voted in clear."""

    root: str
    scan: ScanReport
    problems: tuple[Finding, ...]
    settings: dict[str, Any]
    requirements: tuple[str, ...]
    wrapper_class: str | None
    source_sha256: str
    notes: tuple[str, ...]

    @property
    def findings(self) -> tuple[Finding, ...]:
        return self.scan.findings + self.problems

    @property
    def ok(self) -> bool:
        return not self.findings

    def document(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "ok": self.ok,
            "vulnerable": self.scan.vulnerable,
            "task": self.settings.get("task"),
            "python": self.settings.get("python"),
            "wrapperClass": self.wrapper_class,
            "sourceSha256": self.source_sha256,
            "requirements": list(self.requirements),
            "files": [vars(f) for f in self.scan.files],
            "findings": [{**vars(f), "line": f.one_line()} for f in self.findings],
            "notes": list(self.notes),
        }


def is_package(folder: Path) -> bool:
    """A folder with model/ or src/ at its top is held to the package rules, else the model/ rules."""
    return (folder / "model").is_dir() or (folder / "src").is_dir()


def check_package(folder: Path) -> PackageReport:
    """Scan and check a package folder; every problem is a one-line finding naming file and fix."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotFoundError(f"model package folder '{folder}' does not exist", hint="pass the package's folder")
    scan = scan_folder(folder, package=True)
    files = {f.path: f for f in scan.files}
    scanned_or_refused = set(files) | {f.path for f in scan.findings}
    problems: list[Finding] = []
    notes: list[str] = []
    for required, fix in (
        (WRAPPER_FILE, "add the wrapper (`cleanroom model package init` writes one)"),
        (REQUIREMENTS_FILE, "add it, empty if the clean room's image holds everything the wrapper imports"),
        (SETTINGS_FILE, "add python, task and sample_post_data"),
    ):
        if required not in scanned_or_refused:
            problems.append(Finding(required, "missing", f"is missing; {fix}"))
    weights = any(f.path.startswith("model/") and f.kind in ("safetensors", "onnx") for f in scan.files)
    if not weights and not any(f.path.startswith("model/") for f in scan.findings):
        problems.append(Finding("model/", "missing", "holds no safetensors or ONNX weights; add the model"))
    settings = _check_settings(folder, files, problems)
    requirements = _check_requirements(folder, files, scan, problems, notes)
    wrapper_class = _find_wrapper_class(folder, files, settings.get("wrapper"), problems)
    if wrapper_class is not None and isinstance(settings.get("sample_post_data"), dict):
        _check_sample_post_data(folder, wrapper_class, settings["sample_post_data"], problems)
    return PackageReport(
        root=str(folder),
        scan=scan,
        problems=tuple(problems),
        settings=settings,
        requirements=tuple(requirements),
        wrapper_class=wrapper_class,
        source_sha256=_source_digest(scan),
        notes=tuple(notes),
    )


def _source_digest(scan: ScanReport) -> str:
    digest = hashlib.sha256()
    for scanned in scan.files:
        if scanned.path.startswith("src/"):
            digest.update(f"{scanned.path}\0{scanned.sha256}\n".encode())
    return digest.hexdigest()


# -- settings.yml ---------------------------------------------------------------------------------
def _check_settings(folder: Path, files: dict[str, Any], problems: list[Finding]) -> dict[str, Any]:
    if SETTINGS_FILE not in files:
        return {}
    raw = (folder / SETTINGS_FILE).read_bytes()

    def refuse(message: str) -> dict[str, Any]:
        problems.append(Finding(SETTINGS_FILE, "settings", message))
        return {}

    if len(raw) > SETTINGS_MAX_BYTES:
        return refuse(f"is {len(raw):,} bytes (limit {SETTINGS_MAX_BYTES:,}); keep only the settings")
    import yaml

    text = raw.decode("utf-8")
    try:
        # Aliases can expand a small file into a huge document once it is copied (to JSON, a vote).
        if any(isinstance(token, yaml.AliasToken) for token in yaml.scan(text, Loader=yaml.SafeLoader)):
            return refuse("uses YAML aliases (*name); write each value out")
        settings = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        return refuse(f"is not valid YAML{where}; fix the syntax")
    if not isinstance(settings, dict):
        return refuse("is not a mapping; write python:, task: and sample_post_data:")
    unknown = sorted(str(key) for key in settings if key not in SETTINGS_KEYS)
    if unknown:
        refuse(f"has unknown key(s) {', '.join(unknown)}; known keys are {', '.join(sorted(SETTINGS_KEYS))}")
    python = settings.get("python")
    if not isinstance(python, str) or not _PYTHON.match(python):
        refuse(f'python is {python!r}; give the version as a quoted string, e.g. python: "3.11"')
    task = settings.get("task")
    if task not in TASKS:
        refuse(f"task is {task!r}; use one of {', '.join(sorted(TASKS))}")
    if not isinstance(settings.get("sample_post_data"), dict):
        refuse("sample_post_data is missing or not a mapping; give one request body, e.g. {text: ...}")
    wrapper = settings.get("wrapper")
    if wrapper is not None and not (isinstance(wrapper, str) and wrapper.isidentifier()):
        refuse(f"wrapper is {wrapper!r}; give the wrapper class name in src/inference.py")
    return settings


# -- requirements.txt -----------------------------------------------------------------------------
def _check_requirements(
    folder: Path, files: dict[str, Any], scan: ScanReport, problems: list[Finding], notes: list[str]
) -> list[str]:
    if REQUIREMENTS_FILE not in files:
        return []
    text = (folder / REQUIREMENTS_FILE).read_text(encoding="utf-8")
    pinned: list[str] = []
    hashes: set[str] = set()
    for number, line in _logical_lines(text):
        where = f"line {number}"
        tokens = line.split()
        requirement, options = tokens[0], tokens[1:]
        if requirement.startswith("-"):
            problems.append(
                Finding(
                    REQUIREMENTS_FILE,
                    "requirements",
                    f"{where}: option {requirement.split('=')[0]} is not allowed; the clean room installs offline "
                    "from pinned releases and privatepkgs/ only",
                )
            )
            continue
        line_hashes = [m.group(1) for m in map(_HASH.match, options) if m]
        others = [o for o in options if not _HASH.match(o)]
        if others:
            problems.append(
                Finding(REQUIREMENTS_FILE, "requirements", f"{where}: {others[0]!r} is not a --hash=sha256:<64 hex>")
            )
        wheel = PurePosixPath(requirement.removeprefix("./"))
        if wheel.suffix == ".whl":
            scanned = files.get(str(wheel))
            if len(wheel.parts) != 2 or wheel.parts[0] != "privatepkgs" or scanned is None:
                problems.append(
                    Finding(REQUIREMENTS_FILE, "requirements", f"{where}: wheel {requirement} is not in privatepkgs/")
                )
            elif scanned.sha256 not in line_hashes:
                problems.append(
                    Finding(
                        REQUIREMENTS_FILE,
                        "requirements",
                        f"{where}: {requirement} is not pinned by its hash; add --hash=sha256:{scanned.sha256}",
                    )
                )
        elif not _PINNED.match(requirement):
            problems.append(
                Finding(
                    REQUIREMENTS_FILE,
                    "requirements",
                    f"{where}: {requirement!r} is not pinned; write name==version --hash=sha256:<wheel hash>",
                )
            )
        if not line_hashes:
            problems.append(
                Finding(REQUIREMENTS_FILE, "requirements", f"{where}: {requirement} has no --hash=sha256:; add one")
            )
        hashes.update(line_hashes)
        pinned.append(requirement)
    for scanned in scan.files:
        if scanned.path.startswith("privatepkgs/") and scanned.sha256 not in hashes:
            problems.append(
                Finding(
                    scanned.path,
                    "requirements",
                    f"is not pinned in {REQUIREMENTS_FILE}; add ./{scanned.path} --hash=sha256:{scanned.sha256}",
                )
            )
    if not pinned:
        notes.append(
            f"{REQUIREMENTS_FILE} lists nothing: the wrapper may import only what the clean room's inference "
            f"image holds ({', '.join(IMAGE_PACKAGES)}) and the standard library"
        )
    return pinned


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, line) with comments removed and backslash continuations joined."""
    lines: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split(" #", 1)[0] if not raw.lstrip().startswith("#") else ""
        start, head = pending if pending is not None else (number, "")
        joined = f"{head} {line.rstrip().removesuffix(chr(92))}".strip()
        if line.rstrip().endswith("\\"):
            pending = (start, joined)
            continue
        pending = None
        if joined:
            lines.append((start, joined))
    if pending is not None and pending[1]:
        lines.append(pending)
    return lines


# -- the wrapper class ----------------------------------------------------------------------------
def _find_wrapper_class(folder: Path, files: dict[str, Any], named: Any, problems: list[Finding]) -> str | None:
    """The class of src/inference.py that defines every wrapper method, found in the syntax tree."""
    if WRAPPER_FILE not in files:
        return None
    try:
        tree = ast.parse((folder / WRAPPER_FILE).read_bytes(), filename=WRAPPER_FILE)
    except SyntaxError as exc:
        problems.append(Finding(WRAPPER_FILE, "wrapper", f"is not valid Python (line {exc.lineno}: {exc.msg})"))
        return None
    classes = {
        node.name: {item.name for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))}
        for node in tree.body
        if isinstance(node, ast.ClassDef)
    }
    if isinstance(named, str):
        if named not in classes:
            problems.append(Finding(WRAPPER_FILE, "wrapper", f"has no class {named} (settings.yml wrapper:)"))
            return None
        missing = [m for m in WRAPPER_METHODS if m not in classes[named]]
        if missing:
            problems.append(Finding(WRAPPER_FILE, "wrapper", f"class {named} lacks {', '.join(missing)}; define them"))
            return None
        return named
    complete = [name for name, methods in classes.items() if all(m in methods for m in WRAPPER_METHODS)]
    if len(complete) == 1:
        return complete[0]
    if not complete:
        message = f"has no class defining all of {', '.join(WRAPPER_METHODS)}; implement ModelWrapper"
    else:
        message = f"has several wrapper classes ({', '.join(complete)}); name one in settings.yml wrapper:"
    problems.append(Finding(WRAPPER_FILE, "wrapper", message))
    return None


# -- sample_post_data against the wrapper's input schema ------------------------------------------
def _check_sample_post_data(folder: Path, wrapper_class: str, sample: dict[str, Any], problems: list[Finding]) -> None:
    """The sample must be a request the wrapper accepts: a load test sends it, and the server's
    start-up self-check runs it. The input schema is read from the syntax tree (a literal, module
    constants allowed), like the wrapper class, so the check still runs none of the package's code."""
    name = f"{wrapper_class}.input_schema"
    schema = _literal_return(ast.parse((folder / WRAPPER_FILE).read_bytes()), wrapper_class, "input_schema")
    if not isinstance(schema, dict):
        problems.append(
            Finding(
                WRAPPER_FILE,
                "schema",
                f"{name} does not return a dict literal; return the JSON Schema as a literal (module-level "
                "constants allowed) so the check can read it without running the package",
            )
        )
        return
    try:
        checker = RecordSchema(schema, name=name)
    except InvalidInputError as exc:
        problems.append(Finding(WRAPPER_FILE, "schema", exc.one_line()))
        return
    problem = checker.problem(sample, "sample_post_data")
    if problem is not None:
        problems.append(
            Finding(SETTINGS_FILE, "sample", f"{problem}; make sample_post_data a request valid under {name}")
        )


class _NotLiteral(Exception):
    pass


def _literal_return(tree: ast.Module, class_name: str, method: str) -> Any:
    """What ``class_name.method`` returns if its body is one ``return <literal>``, else None."""
    constants = {
        target.id: node.value
        for node in tree.body
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }
    for node in tree.body:
        if not (isinstance(node, ast.ClassDef) and node.name == class_name):
            continue
        for item in node.body:
            if isinstance(item, ast.FunctionDef) and item.name == method:
                body = [s for s in item.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
                if len(body) == 1 and isinstance(body[0], ast.Return) and body[0].value is not None:
                    try:
                        return _literal(body[0].value, constants, depth=0)
                    except _NotLiteral:
                        return None
    return None


def _literal(node: ast.expr, constants: dict[str, ast.expr], depth: int) -> Any:
    if depth > 32:  # a constant defined through itself, or absurd nesting
        raise _NotLiteral
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Dict) and all(key is not None for key in node.keys):
        return {
            _literal(key, constants, depth + 1): _literal(value, constants, depth + 1)
            for key, value in zip(node.keys, node.values, strict=True)
            if key is not None
        }
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(element, constants, depth + 1) for element in node.elts]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _literal(node.operand, constants, depth + 1)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value
    if isinstance(node, ast.Name) and node.id in constants:
        return _literal(constants[node.id], constants, depth + 1)
    raise _NotLiteral
