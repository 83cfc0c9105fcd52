"""Model onboarding: the model package a provider brings, its wrapper protocol, and the scan.

The scan is an allow-list: a file is accepted because its suffix *and* its content prove it is
one of the few formats the clean room can read without running code (safetensors, ONNX, JSON,
UTF-8 text, the wrapper's clear Python source), never because a deny-list scanner found nothing.
Nothing here imports torch; ``onnx``, ``numpy`` and ``picklescan`` are imported only when a file
needs them.
"""
