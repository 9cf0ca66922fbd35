"""The trace every peer test sends: five spans of every kind, typed attributes, events, an error, a link.

POST /checkout            SERVER    status OK, typed attributes, a card number (redacted), an event
├─ price basket           INTERNAL
├─ POST                   CLIENT    status ERROR "payments timed out", an exception event, a link
└─ publish orders         PRODUCER
   └─ process orders      CONSUMER  an event carrying a bearer token (redacted)
nightly reconcile         INTERNAL  a trace of its own: the target of the link
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, Tracer
from opentelemetry.util.types import AttributeValue

CARD = "4111 1111 1111 1111"
BEARER = (
    "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJwZWVyLXRlc3QiLCJzY29wZSI6Im9yZGVycyJ9."
    "c2lnbmF0dXJlLW5vdC1yZWFsbHktc2lnbmVkLWF0LWFsbA"
)
SECRETS = (CARD, BEARER.split()[1])
SCOPE = ("peer.tests", "1.4.2")

ROOT_ATTRIBUTES: dict[str, AttributeValue] = {
    "http.request.method": "POST",
    "http.route": "/checkout",
    "url.path": "/checkout",
    "http.response.status_code": 201,
    "shop.express": True,
    "shop.discount": 0.15,
    "shop.skus": ("book", "lamp"),
    "shop.quantities": (1, 3),
    "shop.weights": (0.5, 1.25),
    "shop.gift": (True, False),
}


@dataclass
class SentTrace:
    trace_id: str
    spans: list[ReadableSpan]  # the five spans of the trace, root first
    linked: ReadableSpan  # the span of the other trace that the CLIENT span links to

    def by_name(self, name: str) -> ReadableSpan:
        return next(span for span in self.spans if span.name == name)


def span_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.span_id, "016x")


def trace_id(span: ReadableSpan) -> str:
    assert span.context is not None
    return format(span.context.trace_id, "032x")


def make_trace(tracer: Tracer) -> SentTrace:
    """Record the trace with `tracer` (spans end in the order children first)."""
    with tracer.start_as_current_span("nightly reconcile") as linked:
        linked.set_attribute("job.run", 7)
    with tracer.start_as_current_span("POST /checkout", kind=SpanKind.SERVER, attributes=ROOT_ATTRIBUTES) as root:
        root.set_attribute("payment.card_number", CARD)  # a card number: redacted before export
        root.add_event("order.validated", {"items": 2, "total": 42.5, "express": True})
        with tracer.start_as_current_span("price basket", attributes={"basket.size": 2}) as price:
            pass
        link = Link(linked.get_span_context(), {"link.reason": "reconciles this order"})
        with tracer.start_as_current_span(
            "POST",
            kind=SpanKind.CLIENT,
            links=[link],
            attributes={"http.request.method": "POST", "server.address": "payments", "server.port": 8082},
            record_exception=False,
            set_status_on_exception=False,
        ) as client:
            try:
                raise TimeoutError("payments did not answer within 10 ms")
            except TimeoutError as error:
                client.record_exception(error)
            client.set_attribute("error.type", "TimeoutError")
            client.set_status(Status(StatusCode.ERROR, "payments timed out"))
        with (
            tracer.start_as_current_span(
                "publish orders",
                kind=SpanKind.PRODUCER,
                attributes={"messaging.system": "rabbitmq", "messaging.destination.name": "orders"},
            ) as producer,
            tracer.start_as_current_span(
                "process orders", kind=SpanKind.CONSUMER, attributes={"messaging.system": "rabbitmq"}
            ) as consumer,
        ):
            consumer.add_event("auth.checked", {"header": BEARER, "attempt": 1})
        root.set_status(Status(StatusCode.OK))
    spans = [root, price, client, producer, consumer]
    return SentTrace(trace_id(root), spans, linked)  # type: ignore[arg-type]  # SDK spans are ReadableSpans
