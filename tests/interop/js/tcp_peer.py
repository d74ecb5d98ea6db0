#!/usr/bin/env python3
"""A plain-TCP XMPP peer for the JavaScript interop suite: an unmodified slixmpp client.

Started by node_suite.mjs. It logs in over STARTTLS on the c2s port (accepting the server's
self-signed development certificate), sends initial presence, prints one line
`READY <full JID>` on stdout, and answers every chat message that has a body with a chat
message "echo: <body>" to the sender's full JID, printing `GOT <from> <body>` for each.
It exits 0 after --count messages, and non-zero when the session does not start, the
connection drops, or --timeout seconds pass first. Diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
import sys

import slixmpp


def out(line: str) -> None:
    print(line, flush=True)


def err(line: str) -> None:
    print(f"tcp_peer: {line}", file=sys.stderr, flush=True)


class EchoPeer(slixmpp.ClientXMPP):
    def __init__(self, jid: str, password: str, count: int) -> None:
        super().__init__(jid, password)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.enable_plaintext = False
        self.enable_direct_tls = False
        self.enable_starttls = True
        self.remaining = count
        self.result: asyncio.Future[int] = asyncio.get_event_loop().create_future()
        self.add_event_handler("session_start", self.on_session_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("failed_all_auth", lambda _e: self.finish(3, "authentication failed"))
        self.add_event_handler("connection_failed", lambda e: self.finish(4, f"connection failed: {e}"))
        self.add_event_handler("disconnected", lambda _e: self.finish(5, "disconnected before all messages came"))
        self.add_event_handler("stream_error", lambda e: err(f"stream error: {e['condition']} {e['text']!r}"))

    def finish(self, code: int, why: str | None = None) -> None:
        if not self.result.done():
            if why:
                err(why)
            self.result.set_result(code)

    async def on_session_start(self, _event) -> None:
        self.send_presence()
        await self.get_roster()
        out(f"READY {self.boundjid.full}")

    def on_message(self, msg) -> None:
        if msg["type"] not in ("chat", "normal") or not msg["body"]:
            return
        body = msg["body"]
        out(f"GOT {msg['from'].full} {body}")
        self.send_message(mto=msg["from"], mbody=f"echo: {body}", mtype="chat")
        self.remaining -= 1
        if self.remaining <= 0:
            self.finish(0)


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--jid", required=True, help="full JID, e.g. carol@localhost/tcp")
    p.add_argument("--password", required=True)
    p.add_argument("--count", type=int, default=2, help="messages to echo before exiting")
    p.add_argument("--timeout", type=float, default=45.0)
    p.add_argument("--debug", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.ERROR, stream=sys.stderr,
                        format="tcp_peer %(levelname)s %(name)s: %(message)s")

    peer = EchoPeer(args.jid, args.password, args.count)
    peer.connect(args.host, args.port)
    try:
        code = await asyncio.wait_for(peer.result, args.timeout)
    except asyncio.TimeoutError:
        err(f"timed out after {args.timeout:.0f} s with {peer.remaining} message(s) still expected")
        code = 6
    # The last echo must leave before the stream closes: disconnect() waits for the send queue.
    peer.result = asyncio.get_event_loop().create_future()  # later events are not failures
    await peer.disconnect(wait=2.0)
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
