"""Command line: ``python -m containers.inference_server --model-dir DIR (--uds PATH | --host H --port P)``.

Under the clean-room runtime the server does not bind anything itself: the runtime has already
bound and listened on the socket the ingress connects to, and passes it in as an inherited fd
named by ``CLEANROOM_LISTEN_FD`` (then ``--uds`` only documents the spec's socket name). A
socket bound by the workload in a folder it can write is never what the ingress talks to.
"""

from __future__ import annotations

import argparse
import os
import socket
import stat
import sys
from pathlib import Path
from typing import Any

from containers.inference_server.app import DEFAULT_MAX_BATCH, create_app
from containers.inference_server.classifier import ModelFolderError

LISTEN_FD_ENV = "CLEANROOM_LISTEN_FD"  # set by core.runtime.sandbox (not imported: the image has core/onboarding only)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m containers.inference_server",
        description="Serve a model package or an ONNX text classifier: POST /infer, POST /score, Open Inference "
        "Protocol v2 (/v2/health/*, /v2/models/{name}[/infer]), GET /healthz, GET /metadata.",
        epilog="Example: python -m containers.inference_server --model-dir /mnt/remote/model --uds /run/infer.sock",
    )
    parser.add_argument(
        "--model-dir",
        type=Path,
        required=True,
        help="a model package (model/, src/inference.py, ...), a prepared model root (with onnx/) or an onnx/ folder",
    )
    parser.add_argument("--model-name", default="model", help="the name /v2/models/{name} answers to (default: model)")
    parser.add_argument(
        "--source-sha256",
        default=None,
        help="a package's voted wrapper source digest (`cleanroom model package check`); refuse any other",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--uds", type=Path, help="listen on this unix socket (what the runtime uses)")
    where.add_argument("--host", default=None, help="listen on this address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port with --host (default 8000)")
    parser.add_argument(
        "--quantised",
        "--int8",
        action="store_true",
        dest="quantised",
        help="serve model.int8.onnx instead of model.onnx",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="ONNX Runtime intra-op threads (default: CPUs available to this process)",
    )
    parser.add_argument(
        "--max-batch", type=int, default=DEFAULT_MAX_BATCH, help=f"most texts per request (default {DEFAULT_MAX_BATCH})"
    )
    parser.add_argument(
        "--max-length",
        type=int,
        default=None,
        help="truncate texts to this many tokens (default: the model's serving.json)",
    )
    parser.add_argument("--log-level", default="warning", help="uvicorn log level (default warning)")
    return parser.parse_args(argv)


def inherited_listener() -> int | None:
    """The listening unix socket the runtime handed in (``CLEANROOM_LISTEN_FD``), checked to be one."""
    value = os.environ.get(LISTEN_FD_ENV)
    if not value:
        return None
    if not value.isdigit():
        raise SystemExit(f"error: {LISTEN_FD_ENV}={value!r} is not a file descriptor number")
    fd = int(value)
    try:
        probe = socket.socket(fileno=os.dup(fd))
    except OSError as exc:
        raise SystemExit(f"error: {LISTEN_FD_ENV}={fd} is not an open socket ({exc.strerror})") from exc
    with probe:
        if probe.family != socket.AF_UNIX or not probe.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise SystemExit(f"error: {LISTEN_FD_ENV}={fd} is not a listening unix socket")
    return fd


def serve(app: Any, args: argparse.Namespace) -> None:
    """Serve ``app`` on the socket the runtime passed (``CLEANROOM_LISTEN_FD``), else on
    ``args.uds``, else on ``args.host``/``args.port`` (running by hand)."""
    import uvicorn

    listen_fd = inherited_listener()
    if listen_fd is not None:
        uvicorn.run(app, fd=listen_fd, log_level=args.log_level)
    elif args.uds:
        if args.uds.exists() and stat.S_ISSOCK(args.uds.stat().st_mode):
            os.unlink(args.uds)  # a socket left by a previous run would make bind fail
        uvicorn.run(app, uds=str(args.uds), log_level=args.log_level)
    else:
        uvicorn.run(app, host=args.host or "127.0.0.1", port=args.port, log_level=args.log_level)


def main(argv: list[str] | None = None) -> int:
    # Imported here: the summariser reuses serve() from this module and needs no model-package code.
    from containers.inference_server.scoring import create_package_app
    from containers.inference_server.served_model import OnnxFolderModel, load_served_model

    args = parse_args(argv)
    try:
        model = load_served_model(
            args.model_dir,
            args.model_name,
            quantised=args.quantised,
            threads=args.threads,
            max_length=args.max_length,
            source_sha256=args.source_sha256,
        )
    except ModelFolderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if isinstance(model, OnnxFolderModel):
        app = create_app(model.classifier, max_batch=args.max_batch, model_name=args.model_name)
    else:
        app = create_package_app(model, max_batch=args.max_batch)
    serve(app, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
