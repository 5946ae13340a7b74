"""Client helpers and examples for align-serve."""
