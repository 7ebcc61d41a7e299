"""Compression methods that change a float model (structured pruning, ...) and how much compute a model costs."""
