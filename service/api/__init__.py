"""The FastAPI layer."""
