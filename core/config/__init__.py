"""Config fragments (one party's part of a clean-room spec), merging, canonical JSON and hashes."""
