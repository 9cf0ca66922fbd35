"""A Flask app created BEFORE veil.configure() instruments Flask; served by gunicorn in the e2e test."""

from __future__ import annotations

from flask import Flask

app = Flask(__name__)


@app.route("/users/<int:user_id>")
def user(user_id: int) -> str:
    return f"user {user_id}"


@app.route("/boom")
def boom() -> str:
    raise RuntimeError("boom")


import veil  # noqa: E402 - on purpose after the app exists

veil.configure(auto_instrument=False)
veil.instrument("flask")
