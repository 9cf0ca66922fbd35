"""A three-service shop traced with veil: a FastAPI gateway, a Flask inventory and a Django payments service.

Each service adds veil a different way -- `veil.configure()` in code (gateway), `opentelemetry-instrument`
(inventory) and `veil run` (payments) -- and all three meet in one trace. `python -m examples.shop` (or
`veil demo`) starts them on free loopback ports, sends traffic through them and prints the traces.
"""
