"""The private fine-tuning workload: a voted join of several providers' datasources, then LoRA
trained with DP-SGD (opacus), accounted per run and reported to governance's privacy ledger.

``join`` is pure pyarrow (importable without torch); ``private_training`` holds the torch part.
"""
