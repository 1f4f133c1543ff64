"""Batch inference: grouping, packing and calling the model; knows nothing of Flask or Celery."""
