"""HTTP service for a trained run: FastAPI app, micro-batching, uvicorn entry point."""
