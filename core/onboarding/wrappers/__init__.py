"""Wrapper sources that ``cleanroom model package init`` copies verbatim into a package's
``src/inference.py``. They run inside the clean room, so they import nothing from this project:
only the standard library and what the inference image holds (onnxruntime, tokenizers, numpy).
They live here, as modules, so that lint, types and tests hold them to the project's bar."""
