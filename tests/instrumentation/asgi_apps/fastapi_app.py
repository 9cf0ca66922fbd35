"""A FastAPI application created BEFORE veil.configure() instruments FastAPI, served by uvicorn.

veil.configure() installs global providers, which also turns FastAPI's own native telemetry on (FastAPI >=
0.16x): the test checks that each request still has exactly one SERVER span, veil's.
"""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, FastAPI
from fastapi.responses import StreamingResponse

import veil

app = FastAPI()
router = APIRouter(prefix="/api")


@router.get("/items/{item_id}")
async def read_item(item_id: int) -> dict[str, int]:
    return {"item_id": item_id}


@app.get("/stream")
def stream() -> StreamingResponse:
    def digits() -> Iterator[bytes]:
        yield from (str(index).encode() for index in range(4))

    return StreamingResponse(digits(), media_type="text/plain")


app.include_router(router)

veil.configure()  # auto-instruments the installed libraries, FastAPI included
