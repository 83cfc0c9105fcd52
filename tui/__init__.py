"""Terminal front ends: the `cleanroom` CLI and the Textual console. Both drive ``core`` only."""
