"""The shared core: the contract the API and the workers both keep.

Settings (small frozen sections), the names of every Redis key, channel, queue and Celery task,
and the stores both sides read and write (task records, sessions, metrics, the response cache,
API keys and tenants). It imports no other project folder but ``batching`` and ``baseline``.
"""
