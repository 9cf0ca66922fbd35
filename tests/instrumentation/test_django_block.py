"""Django in block mode: a view stopped by a veil security rule answers 403 (not Django's 500 page), over WSGI
and ASGI; a view that catches the refusal keeps its own answer; other exceptions stay Django's. Runs in a child
process: an audit hook, once installed, cannot be removed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.security.netns import environment

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
    import asyncio, json, os, subprocess, sys
    import django
    from django.conf import settings

    sentinel = sys.argv[1]
    settings.configure(
        DEBUG=False, ALLOWED_HOSTS=["*"], ROOT_URLCONF=__name__, SECRET_KEY="block-test", MIDDLEWARE=[],
        LOGGING_CONFIG=None,
    )
    import veil
    from veil.security import Blocked, add_listener

    veil.configure(traces_exporter="none", metrics_exporter="none", logs_exporter="none")
    found = []
    add_listener(found.append)
    django.setup()

    from django.http import HttpResponse
    from django.test import AsyncClient, Client
    from django.urls import path

    def touch(request):
        subprocess.run(["touch", sentinel + "-" + request.GET["tag"]], check=True)
        return HttpResponse("done")

    def caught(request):
        try:
            os.system("touch " + sentinel + "-caught")
        except Blocked as error:
            return HttpResponse("handled: " + str(isinstance(error, PermissionError)))
        return HttpResponse("ran")

    def broken(request):
        raise ValueError("an ordinary bug")

    urlpatterns = [path("touch", touch), path("caught", caught), path("broken", broken)]

    client = Client(raise_request_exception=False)
    wsgi = client.get("/touch", {"tag": "wsgi"})
    handled = client.get("/caught")
    bug = client.get("/broken")
    asgi = asyncio.run(AsyncClient(raise_request_exception=False).get("/touch", {"tag": "asgi"}))
    print(json.dumps({
        "wsgi": [wsgi.status_code, wsgi.content.decode()],
        "asgi": [asgi.status_code, asgi.content.decode()],
        "caught": [handled.status_code, handled.content.decode()],
        "broken": bug.status_code,
        "findings": [[finding.rule_id, finding.action, finding.fields.get("http.route")] for finding in found],
        "sentinels": sorted(os.listdir(os.path.dirname(sentinel))),
    }))
"""


def test_a_blocked_django_view_answers_403_over_wsgi_and_asgi(tmp_path: Path) -> None:
    sentinel = tmp_path / "sentinel"
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(sentinel)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=environment(VEIL_SECURITY="block", VEIL_SECURITY_AGGREGATION_WINDOW="0"),
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome["sentinels"] == []  # no command ran
    for side in ("wsgi", "asgi"):
        status, body = outcome[side]
        assert status == 403 and "blocked by a veil security rule" in body, (side, status, body)
    assert outcome["caught"] == [200, "handled: True"]  # a view that catches the refusal keeps its answer
    assert outcome["broken"] == 500  # anything else is still Django's own answer
    assert outcome["findings"] == [  # each on its view's route, known while the view runs
        ["VEIL-RT-SPAWN", "block", "/touch"],
        ["VEIL-RT-SPAWN", "block", "/caught"],
        ["VEIL-RT-SPAWN", "block", "/touch"],
    ]
