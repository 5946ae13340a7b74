"""Decoding: the engine layer and the alignment strategies (no HTTP in here)."""
