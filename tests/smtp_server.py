"""A real SMTP server on loopback for manyi's tests (aiosmtpd).

Listens on a free port of 127.0.0.1 and prints `PORT <n>` once it accepts
connections. Requires AUTH (PLAIN/LOGIN) with --user/--password unless --no-auth. With
--security starttls or tls it generates a self-signed certificate for
127.0.0.1/localhost into --certdir (cert.pem) with the openssl CLI, which
the test gives manyi as `ca_file`.

Every accepted message is stored as <spool>/<n>.eml, and a line
{"file", "from", "rcpt"} is appended to <spool>/log.jsonl; the number of
TCP connections accepted is kept in <spool>/connections.txt.

Faults on request:
  --fail-451 N          reply 451 to the first N DATA commands, then accept
  --reject ADDR         reply 550 to RCPT TO:<ADDR> (repeatable)
  --drop-after N        once N messages are stored, close the connection at
                        DATA without storing or replying, --drop-count times
                        (0: every time after, as if the server broke)
"""

import argparse
import asyncio
import json
import os
import ssl
import subprocess
import sys
import time
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class State:
    def __init__(self, args):
        self.args = args
        self.stored = 0
        self.fail_451_left = args.fail_451
        self.drops = 0
        self.connections = 0


class Handler:
    def __init__(self, state):
        self.state = state

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in (a.lower() for a in self.state.args.reject):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        st = self.state
        a = st.args
        if a.drop_after is not None and st.stored >= a.drop_after and (a.drop_count == 0 or st.drops < a.drop_count):
            st.drops += 1
            server.transport.abort()
            return "421 4.4.2 connection dropped by the test server"
        if st.fail_451_left > 0:
            st.fail_451_left -= 1
            return "451 4.3.0 Temporary local problem, try again later"
        if a.delay_ms:
            # A slow server keeps a run busy long enough for a second one to
            # start beside it (the concurrent-run tests).
            await asyncio.sleep(a.delay_ms / 1000)
        st.stored += 1
        name = f"{time.time_ns()}-{st.stored:06d}.eml"
        with open(os.path.join(a.spool, name), "wb") as f:
            f.write(envelope.original_content)
        with open(os.path.join(a.spool, "log.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps({"file": name, "from": envelope.mail_from, "rcpt": envelope.rcpt_tos}) + "\n")
        return f"250 2.0.0 Ok: queued as {st.stored}"


def make_server_class(state):
    class CountingSMTP(SMTP):
        def connection_made(self, transport):
            upgrade = self._original_transport is not None
            super().connection_made(transport)
            if not upgrade:
                state.connections += 1
                with open(os.path.join(state.args.spool, "connections.txt"), "w") as f:
                    f.write(str(state.connections))

    return CountingSMTP


def make_cert(certdir):
    os.makedirs(certdir, exist_ok=True)
    cert, key = os.path.join(certdir, "cert.pem"), os.path.join(certdir, "key.pem")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext", "basicConstraints=critical,CA:FALSE",
            "-addext", "extendedKeyUsage=serverAuth",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


async def main():
    # aiosmtpd's own deprecation and AUTH-without-TLS warnings are noise in test output.
    warnings.filterwarnings("ignore")
    p = argparse.ArgumentParser()
    p.add_argument("--spool", required=True)
    p.add_argument("--security", choices=["starttls", "tls", "plain"], default="starttls")
    p.add_argument("--certdir")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--user", default="manyi")
    p.add_argument("--password", default="secret")
    p.add_argument("--no-auth", action="store_true")
    p.add_argument("--fail-451", type=int, default=0)
    p.add_argument("--reject", action="append", default=[])
    p.add_argument("--drop-after", type=int)
    p.add_argument("--drop-count", type=int, default=1)
    p.add_argument("--delay-ms", type=int, default=0)
    a = p.parse_args()
    os.makedirs(a.spool, exist_ok=True)
    state = State(a)

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == a.user and auth_data.password.decode() == a.password
        return AuthResult(success=ok, handled=False)

    ctx = make_cert(a.certdir or a.spool) if a.security != "plain" else None
    cls = make_server_class(state)
    kwargs = dict(
        hostname="manyi-test-smtp",
        authenticator=authenticator,
        auth_required=not a.no_auth,
        # Implicit TLS is encrypted from the start; aiosmtpd only knows STARTTLS.
        auth_require_tls=(a.security == "starttls"),
        tls_context=ctx if a.security == "starttls" else None,
        require_starttls=(a.security == "starttls"),
        data_size_limit=64 * 1024 * 1024,
    )
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: cls(Handler(state), **kwargs), "127.0.0.1", a.port, ssl=ctx if a.security == "tls" else None
    )
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    # Ends when the test closes stdin or kills the process.
    await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
