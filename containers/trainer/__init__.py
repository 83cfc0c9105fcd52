"""The clean room's fine-tuning workload.

Runs as ``python -m containers.trainer --model-dir M --data-dir D --config-dir C --output-dir O
[--progress-file F]``. It reads the provider's model and training config and the consumer's
data as plaintext from its mounts, and writes the fine-tuned model to the output mount, which the
runtime seals to the provider. It knows nothing about keys.
"""
