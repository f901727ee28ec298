"""SMTP server for dewy's mail notifier tests, on Debian's python3-aiosmtpd.

Three listeners share one mailbox directory:
  --plain PORT     no TLS; AUTH offered (loopback only, as dewy's tls=false allows)
  --starttls PORT  STARTTLS required before AUTH or MAIL
  --smtps PORT     TLS from the first byte (implicit TLS)
Each accepted message is written to DIR as one JSON file, atomically
(temp file + rename): listener, TLS or not, the authenticated user, the
envelope and the raw message. The only accepted login is
dewy / dewy-test-password (the tests pass it through MAIL_PASSWORD).

Usage: smtpd.py --dir DIR --plain P --starttls P --smtps P --cert PEM --key PEM
"""

import argparse
import json
import os
import signal
import ssl
import tempfile
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER, PASSWORD = b"dewy", b"dewy-test-password"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USER
        and auth_data.password == PASSWORD
    )
    return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


class Mailbox:
    def __init__(self, directory, listener):
        self.directory = directory
        self.listener = listener

    async def handle_DATA(self, server, session, envelope):
        user = None
        if session.authenticated and isinstance(session.auth_data, LoginPassword):
            user = session.auth_data.login.decode()
        record = {
            "listener": self.listener,
            # aiosmtpd sets session.ssl only for STARTTLS; SMTPS is TLS throughout.
            "tls": self.listener == "smtps" or session.ssl is not None,
            "auth_user": user,
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.original_content.decode("utf-8", "replace"),
        }
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
        with os.fdopen(fd, "w") as f:
            json.dump(record, f)
        os.rename(tmp, tmp.replace(".tmp-", "msg-"))
        return "250 Message accepted for delivery"


def main():
    p = argparse.ArgumentParser()
    for opt in ("--dir", "--plain", "--starttls", "--smtps", "--cert", "--key"):
        p.add_argument(opt, required=True)
    a = p.parse_args()

    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(a.cert, a.key)
    common = dict(hostname="127.0.0.1", authenticator=authenticator, auth_exclude_mechanism=["LOGIN"])
    controllers = [
        Controller(Mailbox(a.dir, "plain"), port=int(a.plain), auth_require_tls=False, **common),
        Controller(Mailbox(a.dir, "starttls"), port=int(a.starttls), tls_context=tls,
                   require_starttls=True, **common),
        # aiosmtpd does not count SMTPS as TLS when offering AUTH, though it is.
        Controller(Mailbox(a.dir, "smtps"), port=int(a.smtps), ssl_context=tls,
                   server_hostname="127.0.0.1", auth_require_tls=False, **common),
    ]
    for c in controllers:
        c.start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    print("ready", flush=True)
    done.wait()
    for c in controllers:
        c.stop()


if __name__ == "__main__":
    main()
