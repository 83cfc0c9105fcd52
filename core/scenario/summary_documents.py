"""The documents owner's documents for the summarise scenario, in both forms the summariser reads.

They are the project's own evaluation set (``core/ml/data/summaries``, fictional, MIT): most
as ``.txt`` files, the rest as rows of one parquet file (``id``, ``text``), so one run exercises
both readers. One more document, an archive made of every other one, is larger than the voted
``max_document_bytes``: the clean room must refuse it by id and size and release none of it.
The reference summaries stay behind: they are the benchmark's, not the owner's.

``python -m core.scenario.summary_documents --output-dir DIR [--count N]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from core.crypto.secret_file import write_public_file
from core.errors import InvalidInputError
from core.ml.datasets import VENDORED_DIR

EVALUATION_SET = VENDORED_DIR / "summaries" / "evaluation.json"
PARQUET_FILE = "more-documents.parquet"
OVERSIZE_ID = "archive.txt"
PARQUET_SHARE = 5  # every fifth document goes into the parquet file


def evaluation_documents() -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = json.loads(EVALUATION_SET.read_text(encoding="utf-8"))
    return documents


def write_documents(folder: Path, count: int | None = None) -> dict[str, list[str]]:
    """Write ``count`` documents (all by default) plus the over-size archive; returns the ids by
    form (``text``, ``parquet``, ``oversize``). Existing files are kept: a resumed step writes
    the same bytes again only where they are missing."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    documents = evaluation_documents()
    if count is not None and not 1 <= count <= len(documents):
        raise InvalidInputError(f"--count {count} is not between 1 and {len(documents)}", hint="pick fewer documents")
    chosen = documents[:count] if count else documents
    in_parquet = [d for i, d in enumerate(chosen) if i % PARQUET_SHARE == PARQUET_SHARE - 1]
    as_text = [d for d in chosen if d not in in_parquet]
    folder.mkdir(parents=True, exist_ok=True)
    for document in as_text:
        target = folder / f"{document['id']}.txt"
        if not target.is_file():
            write_public_file(target, document["text"].encode("utf-8"))
    if in_parquet and not (folder / PARQUET_FILE).is_file():
        table = pa.table({"id": [d["id"] for d in in_parquet], "text": [d["text"] for d in in_parquet]})
        partial = folder / f".{PARQUET_FILE}.partial"
        pq.write_table(table, partial)
        partial.rename(folder / PARQUET_FILE)
    archive = folder / OVERSIZE_ID
    if not archive.is_file():
        write_public_file(archive, "\n\n".join(d["text"] for d in documents).encode("utf-8"))
    return {
        "text": [f"{d['id']}.txt" for d in as_text],
        "parquet": [str(d["id"]) for d in in_parquet],
        "oversize": [OVERSIZE_ID],
    }


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m core.scenario.summary_documents",
        description="Write the summarise scenario's documents (.txt files, one parquet file, one over-size archive).",
    )
    parser.add_argument("--output-dir", type=Path, required=True, help="folder the documents owner uploads")
    parser.add_argument("--count", type=int, default=None, help="only the first N documents (default all)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    written = write_documents(args.output_dir, args.count)
    print(
        f"{len(written['text'])} text files, {len(written['parquet'])} parquet rows and "
        f"{len(written['oversize'])} over-size archive in {args.output_dir}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
