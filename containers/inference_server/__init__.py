"""The clean room's inference server: an ONNX text classifier behind a small HTTP API.

Runs as ``python -m containers.inference_server --model-dir DIR (--uds PATH | --host H --port P)``.
It reads the plaintext model from its mount and never sees keys; TLS and token checks are the
runtime ingress's job in front of it.
"""
