"""FastAPI lifespan and dependency."""
