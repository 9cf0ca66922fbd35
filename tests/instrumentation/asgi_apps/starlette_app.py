"""A Starlette application created BEFORE veil.configure() instruments Starlette, served by uvicorn."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Mount, Route

import veil


async def item(request: Request) -> Response:
    return PlainTextResponse(f"item {request.path_params['item_id']}")


app = Starlette(routes=[Mount("/tenants/{tenant}", routes=[Route("/items/{item_id:int}", item)])])

veil.configure()  # auto-instruments the installed libraries, Starlette included
