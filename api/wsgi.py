"""gunicorn entry point (``api.wsgi:app``): reads Settings once from the environment."""

from api import create_app
from batchgate.settings import Settings

app = create_app(Settings.from_env())
