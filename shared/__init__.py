"""What the API and the worker both need: settings, Redis keys, the event codec, the generation store."""
