"""The browser clients of pubquiz.v1, served by the engine from its own port.

``/`` links the three pages: ``/play`` (a player's phone), ``/host`` (the quiz master's console)
and ``/screen`` (the big screen). Their files live in ``static/`` (no build step, no third-party
code); ``serve.py`` turns them into routes for the engine's HTTP router and adds the host's
results download (``/results``). The JavaScript has its own tests in ``tests/web/``: the codec
against the golden vectors, the QR encoder against libqrencode, and whole games in Chromium.
"""

from pubquiz_engine.web.serve import (
    PAGES,
    STATIC_DIR,
    StaticFile,
    load_static,
    results_handler,
    static_routes,
    web_routes,
)

__all__ = [
    "PAGES",
    "STATIC_DIR",
    "StaticFile",
    "load_static",
    "results_handler",
    "static_routes",
    "web_routes",
]
