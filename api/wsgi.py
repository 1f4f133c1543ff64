"""gunicorn entry point (``api.wsgi:app``): reads Settings once from the environment."""

import gc

from api import create_app
from batchgate.settings import Settings

app = create_app(Settings.from_env())

# What is loaded by now (Flask, Celery, kombu, the routes and services) lives as long as the
# worker process: moved out of the cyclic collector's reach, full collections no longer walk
# it on every pass.
gc.freeze()
