"""Command line: batch ``--input-dir D --output-dir O`` or ``--serve (--uds PATH | --host H --port P)``.

The voted output policy comes from ``--policy FILE`` or ``$CLEANROOM_SUMMARY_POLICY``; there are
no default caps, so a workload started without one refuses to run rather than release
uncapped text. Under the clean-room runtime serve mode does not bind: it serves the listening
socket the runtime passes as ``CLEANROOM_LISTEN_FD`` (as the inference server does). Exit codes:
0 done (refused documents are listed in the report), 2 refused before any output (policy,
model, input or output folder).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from containers.inference_server.__main__ import serve as serve_app
from containers.summariser.batch import OutputFolderError, run_batch
from containers.summariser.documents import DocumentsError
from containers.summariser.encoder import EncoderFolderError
from containers.summariser.policy import POLICY_ENV, PolicyError, load_policy
from containers.summariser.seq2seq import Seq2SeqFolderError
from containers.summariser.summarising import DocumentSummariser, Method
from containers.trainer.model_files import PickleCheckpointError

EXIT_BAD_INPUT = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m containers.summariser",
        description="Summarise documents under a voted output policy (default: extractive-centroid-minilm).",
        epilog="Example: python -m containers.summariser --input-dir /mnt/remote/documents "
        "--output-dir /mnt/remote/summaries --policy policy.json",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--input-dir", type=Path, help="batch mode: folder of .txt files and/or parquet files")
    mode.add_argument("--serve", action="store_true", help="serve POST /summarize instead of a batch")
    parser.add_argument(
        "--output-dir", type=Path, help="batch mode: the datasink folder (summaries.jsonl, report.json)"
    )
    parser.add_argument("--policy", type=Path, help=f"voted output policy JSON (default: ${POLICY_ENV})")
    parser.add_argument("--method", choices=("extractive", "seq2seq"), default="extractive")
    parser.add_argument("--model-dir", type=Path, help="seq2seq: the provider's encoder-decoder model folder")
    parser.add_argument(
        "--encoder-dir", type=Path, help="extractive: sentence encoder folder (default: shipped MiniLM)"
    )
    parser.add_argument("--id-column", default="id", help="parquet id column (default id)")
    parser.add_argument("--text-column", default="text", help="parquet text column (default text)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--uds", type=Path, help="serve: listen on this unix socket")
    parser.add_argument("--host", default=None, help="serve: listen on this address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="serve: TCP port with --host (default 8000)")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    args = parser.parse_args(argv)
    if args.input_dir is not None and args.output_dir is None:
        parser.error("--input-dir needs --output-dir (the datasink folder)")
    if args.method == "seq2seq" and args.model_dir is None:
        parser.error("--method seq2seq needs --model-dir (the provider's model folder)")
    return args


def build_method(args: argparse.Namespace) -> Method:
    if args.method == "seq2seq":
        from containers.summariser.seq2seq import Seq2SeqSummariser

        return Seq2SeqSummariser(args.model_dir, threads=args.threads)
    from containers.summariser.encoder import SentenceEncoder
    from containers.summariser.extractive import ExtractiveSummariser

    return ExtractiveSummariser(SentenceEncoder(args.encoder_dir, threads=args.threads))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a clean room has no egress; never try the hub
    try:
        policy = load_policy(args.policy)
        summariser = DocumentSummariser(build_method(args), policy)
        if not args.serve:
            report = run_batch(
                summariser, args.input_dir, args.output_dir, id_column=args.id_column, text_column=args.text_column
            )
    except (PolicyError, EncoderFolderError, Seq2SeqFolderError, PickleCheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (DocumentsError, OutputFolderError) as exc:
        print(f"error: {exc}; nothing was written", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not args.serve:
        print(
            f"summarised {report['summarised']} document(s), refused {report['refused']} "
            f"({report['method']}, caps respected {report['caps_respected_pct']}%) into {args.output_dir}"
        )
        return 0
    serve(summariser, args)
    return 0


def serve(summariser: DocumentSummariser, args: argparse.Namespace) -> None:
    from containers.summariser.app import create_app

    serve_app(create_app(summariser), args)


if __name__ == "__main__":
    sys.exit(main())
