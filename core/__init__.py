"""The clean-room engine: crypto, config, governance, keys, storage, runtime and ML.

Nothing under ``core`` imports a UI library (textual, rich); a test enforces it so that
the engine stays usable from scripts, services and workloads alike.
"""
