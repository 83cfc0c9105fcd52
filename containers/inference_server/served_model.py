"""The model a server answers for: a checked model package, or a plain ONNX classifier folder.

Both speak in records: a request record valid under the model's input JSON Schema, a response
record valid under its output schema. A plain ONNX folder (what ``cleanroom model prepare`` and
the trainer write) takes the schemas of the shipped text-classification wrapper, so a consumer
calls ``/score`` and ``/v2`` the same way whichever form the provider mounted.

A package is checked with ``core.onboarding.package.check_package`` (the scan included) and its
wrapper loaded by the hash-checked loader: the very code ``cleanroom model package check`` runs,
so the clean room accepts exactly what the check accepted. Before the server answers anything,
the package's ``sample_post_data`` goes through the wrapper and its answer through the output
schema: a package that cannot answer its own sample never reports ready.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from containers.inference_server.classifier import ModelFolderError, OnnxClassifier
from core.errors import CleanroomError
from core.onboarding.package import check_package, is_package
from core.onboarding.package_digest import package_sha256
from core.onboarding.request_schema import RecordSchema
from core.onboarding.wrapper import ModelWrapper, load_wrapper
from core.onboarding.wrappers.text_classification import TextClassifier, output_schema_for


class ModelFault(Exception):
    """The model (not the request) failed: the server answers 500 with this one line."""


class ServedModel(ABC):
    """A model with a name, a version, record schemas and a batch ``predict``."""

    platform = "unknown"

    def __init__(self, name: str, version: str, input_schema: RecordSchema, output_schema: RecordSchema) -> None:
        self.name = name
        self.version = version
        self.input_schema = input_schema
        self.output_schema = output_schema

    @abstractmethod
    def predict(self, records: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Raw answers, one per record; ``answer`` checks them against ``output_schema``."""

    def answer(self, records: Sequence[Mapping[str, Any]]) -> list[Any]:
        """Answers already checked against the output schema, or ModelFault. The exception text of
        a failing wrapper is not passed on: it could quote a consumer's private input."""
        try:
            outputs = self.predict(records)
        except Exception as exc:
            raise ModelFault(
                f"the model failed on this request ({type(exc).__name__}); its provider must fix the model package"
            ) from None
        if not isinstance(outputs, list) or len(outputs) != len(records):
            answered = f"{len(outputs)} output(s)" if isinstance(outputs, list) else f"a {type(outputs).__name__}"
            raise ModelFault(
                f"the model answered {answered} for {len(records)} record(s); "
                "its provider must fix inference_batch in the model package"
            )
        for index, output in enumerate(outputs):
            problem = self.output_schema.problem(output, f"output[{index}]", quote_names=False)
            if problem is not None:
                raise ModelFault(
                    f"the model's answer does not match its output schema ({problem}); "
                    "its provider must fix the model package"
                )
        return outputs

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "platform": self.platform}


class OnnxFolderModel(ServedModel):
    """The plain ONNX classifier folder, answering in the text-classification wrapper's records."""

    platform = "onnxruntime_onnx"

    def __init__(self, classifier: OnnxClassifier, name: str) -> None:
        super().__init__(
            name,
            classifier.model_sha256[:12],
            RecordSchema(TextClassifier().input_schema(), name="input schema"),
            RecordSchema(output_schema_for(classifier.labels), name="output schema"),
        )
        self.classifier = classifier

    def predict(self, records: Sequence[Mapping[str, Any]]) -> list[Any]:
        predictions = self.classifier.classify([record["text"] for record in records])
        return [{"label": p.label, "score": p.score} for p in predictions]


class PackageModel(ServedModel):
    """A model package that passed ``check_package``, served through its own wrapper."""

    def __init__(self, wrapper: ModelWrapper, name: str, package_hash: str, task: str, source_sha256: str) -> None:
        wrapper_name = type(wrapper).__name__
        super().__init__(
            name,
            package_hash[:12],
            RecordSchema(wrapper.input_schema(), name=f"{wrapper_name}.input_schema"),
            RecordSchema(wrapper.output_schema(), name=f"{wrapper_name}.output_schema"),
        )
        self.wrapper = wrapper
        self.task = task
        self.source_sha256 = source_sha256
        self.package_sha256 = package_hash
        self.platform = f"cleanroom_package/{task}"

    def predict(self, records: Sequence[Mapping[str, Any]]) -> list[Any]:
        return self.wrapper.inference_batch(records)

    def metadata(self) -> dict[str, Any]:
        return {
            **super().metadata(),
            "task": self.task,
            "package_sha256": self.package_sha256,
            "source_sha256": self.source_sha256,
        }


def load_package(folder: Path, name: str, *, source_sha256: str | None = None) -> PackageModel:
    """Check, load and self-test the package in ``folder``, or raise ModelFolderError (one line)."""
    try:
        report = check_package(folder)
    except CleanroomError as exc:
        raise ModelFolderError(exc.one_line()) from None
    if not report.ok:
        raise ModelFolderError(
            f"model package '{folder}' does not pass its check ({len(report.findings)} finding(s), first: "
            f"{report.findings[0].one_line()}); run `cleanroom model package check` and fix each finding"
        )
    if source_sha256 is not None and report.source_sha256 != source_sha256:
        raise ModelFolderError(
            f"model package '{folder}' has wrapper source sha256 {report.source_sha256}, not the voted "
            f"{source_sha256}; mount the package the contract names"
        )
    try:
        wrapper = load_wrapper(report)
        # The registry's packageHash: the version a model registry entry and this server both name.
        package_hash = package_sha256(folder)
        model = PackageModel(wrapper, name, package_hash, report.settings["task"], report.source_sha256)
    except CleanroomError as exc:
        raise ModelFolderError(exc.one_line()) from None
    except Exception as exc:  # the provider's init or schema methods; no request has been seen yet
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise ModelFolderError(
            f"model package '{folder}': its wrapper failed to start ({detail}); its provider must fix src/inference.py"
        ) from None
    sample = report.settings["sample_post_data"]
    problem = model.input_schema.problem(sample, "sample_post_data")
    if problem is not None:
        raise ModelFolderError(f"model package '{folder}': {problem}; make sample_post_data valid under input_schema")
    try:
        model.answer([sample])
    except ModelFault as exc:
        raise ModelFolderError(f"model package '{folder}' fails on its own sample_post_data: {exc}") from None
    return model


def load_served_model(
    model_dir: Path,
    name: str,
    *,
    quantised: bool = False,
    threads: int | None = None,
    max_length: int | None = None,
    source_sha256: str | None = None,
) -> PackageModel | OnnxFolderModel:
    """The mounted model: a package if the folder has ``model/`` or ``src/``, else an ONNX folder
    (whose classifier also serves ``/infer`` in its historical shape)."""
    model_dir = Path(model_dir)
    if is_package(model_dir):
        tuning = [
            flag
            for flag, given in (("--quantised", quantised), ("--threads", threads), ("--max-length", max_length))
            if given
        ]
        if tuning:
            raise ModelFolderError(
                f"{', '.join(tuning)} tune an ONNX folder, but '{model_dir}' is a model package; "
                "leave them out (the package's wrapper decides)"
            )
        return load_package(model_dir, name, source_sha256=source_sha256)
    if source_sha256 is not None:
        raise ModelFolderError(
            f"--source-sha256 pins a model package's wrapper, but '{model_dir}' is an ONNX folder; leave it out"
        )
    classifier = OnnxClassifier(model_dir, quantised=quantised, threads=threads, max_length=max_length)
    return OnnxFolderModel(classifier, name)
