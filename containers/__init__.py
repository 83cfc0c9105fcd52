"""Workloads that run inside the clean room. They read plaintext from their mounts and write
outputs; they know nothing about keys, governance or the engine (no imports of ``core``/``tui``)."""
