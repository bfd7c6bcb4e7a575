"""Penguin species classifier served over HTTP: the service's own ASGI layer (service/api.py, no
web framework) run by Gunicorn with Uvicorn workers; why not FastAPI: service/README.md."""
