"""The HTTP edge of reasonq: a thin FastAPI layer over the generation store and the event hub."""
