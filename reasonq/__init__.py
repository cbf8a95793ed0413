"""reasonq: durable, resumable, multi-viewer streaming of reasoning-model generations."""

__version__ = "0.1.0"
