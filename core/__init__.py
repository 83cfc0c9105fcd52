"""The clean-room engine: crypto, config, governance, keys, storage, runtime and ML.

Nothing under ``core`` imports a UI library (textual, rich); a test enforces it so that
the engine stays usable from scripts, services and workloads alike.
"""

import sys as _sys

# core talks HTTP through httpx but never runs httpx's own command line, which httpx imports
# eagerly whenever click, rich and pygments are installed: that would load rich into every
# engine process (and cost ~0.15 s of each service start). A None entry makes that optional
# import fail, which httpx handles by leaving its CLI out. It does not affect the `httpx`
# command, which runs in its own process.
_sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
