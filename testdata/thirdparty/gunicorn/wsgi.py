"""A WSGI app as gunicorn's users write one.

Its release directory holds a VERSION file and, in a bad release, a file
named UNHEALTHY: / still answers, /healthz answers 500.
"""

import os

# realpath resolves the current symlink: this is the release being started.
HERE = os.path.dirname(os.path.realpath(__file__))
with open(os.path.join(HERE, "VERSION")) as f:
    VERSION = f.read().strip()
UNHEALTHY = os.path.exists(os.path.join(HERE, "UNHEALTHY"))


def application(environ, start_response):
    headers = [("Content-Type", "text/plain"), ("X-Version", VERSION)]
    if environ["PATH_INFO"] == "/healthz":
        if UNHEALTHY:
            start_response("500 Internal Server Error", headers)
            return [b"unhealthy\n"]
        start_response("200 OK", headers)
        return [b"ok\n"]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length)
    start_response("200 OK", headers)
    return [f"{VERSION} {environ['REQUEST_METHOD']} {len(body)}\n".encode()]
