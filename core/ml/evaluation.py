"""The consumer's evaluation client: send a labelled split to a clean-room endpoint and score it.

The consumer only ever sees predictions, never the model; the accuracy it computes here is its
own measurement of the provider's model on its own data. TLS is pinned to the clean room's CA
(the one the contract enabled), so a look-alike endpoint cannot collect the test set.
Progress is reported through a plain iterator/callback so the CLI can draw a progress bar and
the console can chart accuracy as it climbs, without core importing any UI library.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from core.errors import AccessDeniedError, IntegrityError, InvalidInputError, NotFoundError, ServiceUnavailableError
from core.ml.datasets import LABEL_NAMES, LabelledRows

DEFAULT_BATCH_SIZE = 64


@dataclass(frozen=True)
class EvaluationProgress:
    done: int
    total: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.done if self.done else 0.0


@dataclass
class EvaluationReport:
    total: int
    correct: int
    labels: list[str]
    confusion: list[list[int]]  # confusion[true][predicted]
    elapsed_s: float
    requests: int
    model: dict[str, Any] = field(default_factory=dict)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total if self.total else 0.0

    def per_class(self) -> dict[str, dict[str, float | int]]:
        result: dict[str, dict[str, float | int]] = {}
        for k, name in enumerate(self.labels):
            true_positive = self.confusion[k][k]
            predicted = sum(row[k] for row in self.confusion)
            support = sum(self.confusion[k])
            result[name] = {
                "precision": true_positive / predicted if predicted else 0.0,
                "recall": true_positive / support if support else 0.0,
                "support": support,
            }
        return result

    def as_dict(self) -> dict[str, Any]:
        return {
            "total_rows": self.total,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "per_class": self.per_class(),
            "confusion_matrix": {"labels": self.labels, "rows_true_columns_predicted": self.confusion},
            "requests": self.requests,
            "elapsed_s": round(self.elapsed_s, 3),
            "rows_per_s": round(self.total / self.elapsed_s, 2) if self.elapsed_s else None,
            "model": self.model,
        }


class InferenceClient:
    """HTTPS client for a clean-room inference endpoint: CA pinned, bearer token."""

    def __init__(
        self, endpoint: str, *, ca: Path | None = None, token: str | None = None, timeout: float = 120.0
    ) -> None:
        base = endpoint.rstrip("/")
        if base.endswith("/infer"):
            base = base[: -len("/infer")]
        if not base.startswith(("https://", "http://")):
            raise InvalidInputError(
                f"endpoint '{endpoint}' is not an http(s) URL", hint="pass --endpoint https://HOST:PORT"
            )
        if ca is not None and not Path(ca).is_file():
            raise NotFoundError(
                f"CA certificate '{ca}' does not exist", hint="fetch it with `cleanroom governance ca show`"
            )
        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=str(ca)) if ca else True
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.endpoint = base
        self._http = httpx.Client(base_url=base, verify=verify, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> InferenceClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def metadata(self) -> dict[str, Any]:
        return self._request("GET", "/metadata")

    def classify(self, texts: list[str]) -> list[int]:
        answer = self._request("POST", "/infer", json={"inputs": texts})
        return [int(v) for v in answer["label_ids"]]

    def classify_one(self, text: str) -> int:
        """The field sample's protocol: one ``{"data": text}`` request per row."""
        return int(self._request("POST", "/infer", json={"data": text})["label_id"])

    def _request(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.ConnectError as exc:
            if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate verify failed" in str(exc):
                raise IntegrityError(
                    f"endpoint {self.endpoint} presented a TLS certificate not signed by the given CA",
                    hint="check --ca is the clean room's CA",
                ) from exc
            raise ServiceUnavailableError(
                f"endpoint {self.endpoint} is not reachable ({exc})", hint="check the deployment is running and the URL"
            ) from exc
        except httpx.TimeoutException as exc:
            raise ServiceUnavailableError(
                f"endpoint {self.endpoint} timed out on {path}", hint="use a smaller --batch-size"
            ) from exc
        if response.status_code in (401, 403):
            raise AccessDeniedError(
                f"endpoint {self.endpoint} refused the token ({response.status_code})",
                hint="get a fresh token for this deployment and pass --token",
            )
        if response.status_code >= 400:
            raise InvalidInputError(
                f"endpoint {self.endpoint}{path} answered {response.status_code}: {_error_text(response)}"
            )
        answer: dict[str, Any] = response.json()
        return answer


def _error_text(response: httpx.Response) -> str:
    try:
        document = response.json()
    except ValueError:
        return response.text[:200]
    return str(document.get("error") or document.get("detail") or document)[:300]


class EvaluationRun:
    """Iterate to send the rows; each step yields the running progress, then ask for ``report()``."""

    def __init__(
        self,
        rows: LabelledRows,
        client: InferenceClient,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        per_row: bool = False,
    ) -> None:
        if batch_size < 1:
            raise InvalidInputError(f"batch size {batch_size} is not positive", hint="use --batch-size 1 or more")
        empty = [i for i, text in enumerate(rows.texts) if not text.strip()]
        if empty:
            raise InvalidInputError(
                f"dataset row {empty[0]} has an empty text ({len(empty)} such rows)",
                hint="remove empty rows before evaluating",
            )
        self.rows = rows
        self.client = client
        self.per_row = per_row
        self.model = client.metadata()
        self.batch_size = min(batch_size, int(self.model.get("max_batch") or batch_size))
        self.labels = list(self.model.get("labels") or LABEL_NAMES)
        size = max(len(self.labels), max(rows.labels, default=0) + 1)
        self.labels += [str(k) for k in range(len(self.labels), size)]
        self._confusion = [[0] * size for _ in range(size)]
        self._correct = 0
        self._done = 0
        self._requests = 0
        self._elapsed = 0.0

    def __iter__(self) -> Iterator[EvaluationProgress]:
        step = 1 if self.per_row else self.batch_size
        for start in range(0, len(self.rows), step):
            texts = self.rows.texts[start : start + step]
            began = time.perf_counter()
            predicted = [self.client.classify_one(texts[0])] if self.per_row else self.client.classify(texts)
            self._elapsed += time.perf_counter() - began
            self._requests += 1
            if len(predicted) != len(texts):
                raise InvalidInputError(
                    f"endpoint {self.client.endpoint} answered {len(predicted)} labels for {len(texts)} texts",
                    hint="check that it serves the cleanroom inference API",
                )
            for truth, guess in zip(self.rows.labels[start : start + step], predicted, strict=True):
                self._confusion[truth][guess] += 1
                self._correct += int(truth == guess)
            self._done += len(texts)
            yield EvaluationProgress(done=self._done, total=len(self.rows), correct=self._correct)

    def report(self) -> EvaluationReport:
        return EvaluationReport(
            total=self._done,
            correct=self._correct,
            labels=self.labels,
            confusion=self._confusion,
            elapsed_s=self._elapsed,
            requests=self._requests,
            model=self.model,
        )


def evaluate(
    rows: LabelledRows,
    endpoint: str,
    *,
    ca: Path | None = None,
    token: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    per_row: bool = False,
    on_progress: Callable[[EvaluationProgress], None] | None = None,
) -> EvaluationReport:
    with InferenceClient(endpoint, ca=ca, token=token) as client:
        run = EvaluationRun(rows, client, batch_size=batch_size, per_row=per_row)
        for progress in run:
            if on_progress:
                on_progress(progress)
        return run.report()
