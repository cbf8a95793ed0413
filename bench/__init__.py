"""reasonq's benchmark suite: starts its own stack on free ports and measures the hot path (`python -m bench`)."""
