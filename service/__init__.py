"""Penguin species classifier served over HTTP (FastAPI app run by Gunicorn + Uvicorn workers)."""
