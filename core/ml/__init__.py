"""Machine-learning side of the engine: datasets, model preparation and the evaluation client.

Heavy libraries (torch, transformers, datasets) are imported inside the modules that need them,
so importing ``core.ml`` stays cheap for the light verbs.
"""

import os

# Clean-room machines are offline: never reach for the hub unless the user opted in
# (HF_HUB_OFFLINE=0). Set before transformers/datasets read it at their import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
