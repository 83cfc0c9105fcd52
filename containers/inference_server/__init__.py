"""The clean room's inference server: a model package (or a plain ONNX text classifier) behind
``/infer``, Azure-ML-style ``/score`` and Open Inference Protocol v2.

Runs as ``python -m containers.inference_server --model-dir DIR (--uds PATH | --host H --port P)``.
It reads the plaintext model from its mount and never sees keys; TLS and token checks are the
runtime ingress's job in front of it.
"""
