"""Serve the DELIBERATELY VULNERABLE example on 127.0.0.1 (port SHOP_PORT, default 8080) with werkzeug, for
`veil demo` and quick experiments: `veil run -- python -m examples.vulnerable`. Never binds another address."""

from __future__ import annotations

import os

from werkzeug.serving import make_server

from examples.vulnerable.app import app


def main() -> None:
    server = make_server("127.0.0.1", int(os.environ.get("SHOP_PORT", "8080")), app)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
