"""Machine-learning side of the engine: datasets, model preparation and the evaluation client.

Heavy libraries (torch, transformers, datasets) are imported inside the modules that need them,
so importing ``core.ml`` stays cheap for the light verbs.
"""
