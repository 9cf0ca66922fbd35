"""Applications served by uvicorn in the ASGI, Starlette and FastAPI real-server tests."""
