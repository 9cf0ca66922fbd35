"""RedisInstrumentor against a real Redis: commands with names kept and values gone, pipelines and transactions
as one span, errors, asyncio concurrency without bleed, and random values never reaching the OTLP receiver.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry

import veil
from tests.fixtures.databases import Server
from tests.fixtures.otlp import OTLPReceiver
from tests.instrumentation._databases import (
    DBRecording,
    assert_children_of,
    assert_failed_once,
    assert_never_exported,
    attributes,
    duration_points,
    traced_fixture,
    veil_over_otlp,
)
from tests.instrumentation._recording import free_port
from veil.instrumentation.redis import RedisInstrumentor

traced = traced_fixture(RedisInstrumentor)


@pytest.fixture
def client(redis_server: Server, traced: DBRecording) -> Iterator[redis.Redis]:
    client = redis.Redis(host=redis_server.host, port=redis_server.port, db=2)
    client.flushdb()
    traced.exporter.clear()
    yield client
    client.close()


def test_commands_keep_key_names_and_never_values(
    traced: DBRecording, client: redis.Redis, redis_server: Server
) -> None:
    with traced.request() as request:
        client.set("user:42", "alice-secret", ex=60)
        assert client.get("user:42") == b"alice-secret"
        client.hset("profile:42", mapping={"email": "alice@example.com", "plan": "gold"})
    set_span, get_span, hset_span = traced.client_spans()
    assert_children_of([set_span, get_span, hset_span], request)
    assert set_span.name == "SET"
    assert attributes(set_span) == {
        "db.system.name": "redis",
        "db.namespace": "2",
        "server.address": "127.0.0.1",
        "server.port": redis_server.port,
        "db.operation.name": "SET",
        "db.query.summary": "SET",
        "db.query.text": "SET user:42 ? ? ?",
    }
    assert attributes(get_span)["db.query.text"] == "GET user:42"
    assert attributes(hset_span)["db.query.text"] == "HSET profile:42 email ? plan ?"
    assert {point.attributes["db.operation.name"] for point in duration_points(traced)} == {
        "FLUSHDB",
        "SET",
        "GET",
        "HSET",
    }


def test_a_pipeline_is_one_span_with_its_command_count(traced: DBRecording, client: redis.Redis) -> None:
    with client.pipeline(transaction=False) as pipeline:
        pipeline.set("a", "secret-1").set("b", "secret-2").set("c", "secret-3")
        pipeline.execute()
    with client.pipeline() as transaction:
        transaction.incr("counter").get("a")
        transaction.execute()
    pipeline_span, transaction_span = traced.client_spans()
    assert pipeline_span.name == "PIPELINE SET"
    assert attributes(pipeline_span)["db.operation.batch.size"] == 3
    assert attributes(pipeline_span)["db.query.text"] == "SET a ?; SET b ?; SET c ?"
    assert transaction_span.name == "MULTI"
    assert attributes(transaction_span)["db.query.text"] == "INCRBY counter ?; GET a"  # redis-py sends INCRBY


def test_errors_carry_the_redis_error_prefix(traced: DBRecording, client: redis.Redis) -> None:
    client.set("text", "value")
    traced.exporter.clear()
    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        client.lpush("text", "x")
    assert_failed_once(traced, "WRONGTYPE", "WRONGTYPE")


def test_a_refused_connection_is_recorded_on_the_command(traced: DBRecording) -> None:
    client = redis.Redis(port=free_port(), socket_connect_timeout=2, retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.exceptions.ConnectionError):
        client.get("anything")
    assert_failed_once(traced, "redis.exceptions.ConnectionError")


def test_auth_arguments_are_never_recorded(traced: DBRecording, redis_server: Server) -> None:
    client = redis.Redis(host=redis_server.host, port=redis_server.port, retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.exceptions.AuthenticationError):
        client.execute_command("AUTH", "admin", "hunter2")  # no such user on the server
    span = assert_failed_once(traced, "redis.exceptions.AuthenticationError")
    assert attributes(span)["db.query.text"] == "AUTH ?"


async def test_asyncio_clients_under_concurrent_requests_do_not_bleed(
    traced: DBRecording, redis_server: Server
) -> None:
    async def one_request(index: int) -> tuple[int, Any]:
        client = redis.asyncio.Redis(host=redis_server.host, port=redis_server.port)
        with traced.request(f"GET /cart/{index}") as request:
            for step in range(3):
                await client.set(f"cart:{index}:{step}", f"item-{index}")
                await asyncio.sleep(0)
            async with client.pipeline() as pipeline:
                await pipeline.get(f"cart:{index}:0").get(f"cart:{index}:1").execute()
        await client.aclose()
        return index, request

    requests = dict(await asyncio.gather(*(one_request(index) for index in range(8))))
    spans = traced.client_spans()
    assert len(spans) == 8 * 4
    for index, request in requests.items():
        mine = [span for span in spans if f"cart:{index}:" in attributes(span)["db.query.text"]]
        assert len(mine) == 4
        assert_children_of(mine, request)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(
        st.text(alphabet="abcdefghijkmnpqrstuvwxyz23456789", min_size=10, max_size=20), min_size=3, max_size=3
    )
)
def test_random_values_never_reach_the_receiver(
    configure_veil: Callable[..., veil.Telemetry], otlp_receiver: OTLPReceiver, redis_server: Server, values: list[str]
) -> None:
    with veil_over_otlp(configure_veil, otlp_receiver, "redis") as handle:
        client = redis.Redis(host=redis_server.host, port=redis_server.port)
        client.set("key:a", values[0])
        client.hset("key:h", mapping={"field": values[1]})
        client.pipeline().rpush("key:l", values[2]).publish("channel", values[0]).execute()
        client.close()
        assert assert_never_exported(handle, otlp_receiver, values) == 3
