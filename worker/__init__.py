"""The Celery side of reasonq: tasks that stream generations from the model into Redis."""
