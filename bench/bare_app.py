"""The bare Flask page ``signin.py`` compares GET /login with: a tiny Flask app serving
one static page through Jinja, under the same gunicorn settings as the portal.

``BENCH_BARE_PAGE`` names an HTML file (``signin.py`` saves the portal's own rendered
/login there, so both answers are the same size); without it a short placeholder is
served. No session, no database, no extension: what Flask itself costs per request.

    BENCH_BARE_PAGE=/tmp/login.html gunicorn --pythonpath bench bare_app:app
"""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, render_template
from jinja2 import DictLoader

PLACEHOLDER = "<!doctype html><title>ログイン</title><p>ログイン</p>"


def _page() -> str:
    path = os.environ.get("BENCH_BARE_PAGE")
    text = Path(path).read_text(encoding="utf-8") if path else PLACEHOLDER
    # Served as a template, as a Flask page is, without reading anything in it as Jinja.
    return "{% raw %}" + text + "{% endraw %}"


app = Flask(__name__)
# Compiled once and cached by Jinja, like the portal's templates.
app.jinja_loader = DictLoader({"login.html": _page()})


@app.get("/login")
def login() -> str:
    return render_template("login.html")
