"""Command line: ``python -m containers.inference_server --model-dir DIR (--uds PATH | --host H --port P)``."""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path

from containers.inference_server.app import DEFAULT_MAX_BATCH, create_app
from containers.inference_server.classifier import ModelFolderError, OnnxClassifier


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m containers.inference_server",
        description="Serve an ONNX text classifier: POST /infer, GET /healthz, GET /metadata.",
        epilog="Example: python -m containers.inference_server --model-dir /mnt/remote/model --uds /run/infer.sock",
    )
    parser.add_argument("--model-dir", type=Path, required=True,
                        help="prepared model root (with onnx/) or the onnx/ folder itself")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--uds", type=Path, help="listen on this unix socket (what the runtime uses)")
    where.add_argument("--host", default=None, help="listen on this address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port with --host (default 8000)")
    parser.add_argument("--quantised", "--int8", action="store_true", dest="quantised",
                        help="serve model.int8.onnx instead of model.onnx")
    parser.add_argument("--threads", type=int, default=None,
                        help="ONNX Runtime intra-op threads (default: CPUs available to this process)")
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH,
                        help=f"most texts per request (default {DEFAULT_MAX_BATCH})")
    parser.add_argument("--max-length", type=int, default=None,
                        help="truncate texts to this many tokens (default: the model's serving.json)")
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    args = parse_args(argv)
    try:
        classifier = OnnxClassifier(args.model_dir, quantised=args.quantised, threads=args.threads,
                                    max_length=args.max_length)
    except ModelFolderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = create_app(classifier, max_batch=args.max_batch)
    if args.uds:
        if args.uds.exists() and stat.S_ISSOCK(args.uds.stat().st_mode):
            os.unlink(args.uds)  # a socket left by a previous run would make bind fail
        uvicorn.run(app, uds=str(args.uds), log_level=args.log_level)
    else:
        uvicorn.run(app, host=args.host or "127.0.0.1", port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
