"""One module per top-level `cleanroom` verb group, loaded only when that verb runs."""
