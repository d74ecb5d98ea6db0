#!/usr/bin/env python3
"""Interop suite for external components: slixmpp's ComponentXMPP against a real server.

Started by tests/interop/run.sh, which configures the component domain and secret. The
component is an unmodified slixmpp ComponentXMPP with its stock plugins. The scenario:

  1. a component with a wrong secret is refused (no session, a stream error)
  2. the component connects with the right secret; carol logs in
  3. carol's message to a user of the component's domain reaches it, and its echo
     (from that user) reaches carol
  4. carol asks the component for its software version (XEP-0092) and gets its answer;
     the component's own disco#info query to carol's server is answered
  5. XEP-0357: carol registers the component as her push app server and goes offline;
     dave's message to her reaches the component as a pubsub publish with the summary
     form and no body
  6. the component disconnects: carol's next message to it comes back with
     service-unavailable

Exit status 0 only if every step passed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ssl
from typing import Any

from harness import STEP_TIMEOUT, check, iq_call, run_chain, run_suite, wait_for
import harness
from slixmpp import ClientXMPP, ComponentXMPP
from slixmpp.xmlstream import ET
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

OVERALL_TIMEOUT = 60.0


class Traced:
    """What both kinds of client record, for the failure report."""

    def _trace_init(self, label: str) -> None:
        self.label = label
        self.session_started = False
        self.stream_errors: list[str] = []
        self.disconnects = 0
        self.messages: list[Any] = []
        self.trace: collections.deque[str] = collections.deque(maxlen=40)
        on = self.add_event_handler
        on("session_start", lambda _e: setattr(self, "session_started", True))
        on("stream_error", lambda e: self.stream_errors.append(str(e["condition"])))
        on("disconnected", lambda _r: setattr(self, "disconnects", self.disconnects + 1))
        on("message", self.messages.append)
        on("message_error", self.messages.append)
        self.add_filter("in", self._trace_in)

    def _trace_in(self, stanza):
        self.trace.append(f"<- {stanza}"[:300])
        return stanza

    def describe(self) -> str:
        lines = [f"--- {self.label} ---", f"  session_started={self.session_started} stream_errors={self.stream_errors}"]
        return "\n".join(lines + ["  " + t for t in self.trace])


class Bridge(ComponentXMPP, Traced):
    """A component that echoes messages and answers version queries."""

    def __init__(self, label: str, domain: str, secret: str, host: str, port: int) -> None:
        ComponentXMPP.__init__(self, domain, secret, host, port)
        self._trace_init(label)
        for plugin in ("xep_0030", "xep_0092"):
            self.register_plugin(plugin)
        self.plugin["xep_0092"].config.update({"software_name": "interop-bridge", "version": "1.0"})
        self.add_event_handler("message", self._echo)
        self.publishes: list[Any] = []
        pubsub = "{jabber:component:accept}iq/{http://jabber.org/protocol/pubsub}pubsub"
        self.register_handler(Callback("push publish", MatchXPath(pubsub), self._on_publish))

    def _on_publish(self, iq) -> None:
        """As a XEP-0357 app server: keep the notification, say it was taken."""
        self.publishes.append(iq)
        iq.reply(clear=True).send()

    def _echo(self, msg) -> None:
        if msg["type"] in ("chat", "normal") and msg["body"]:
            msg.reply(f"echo: {msg['body']}").send()


class Client(ClientXMPP, Traced):
    def __init__(self, label: str, jid: str, password: str) -> None:
        ClientXMPP.__init__(self, jid, password)
        self._trace_init(label)
        for plugin in ("xep_0030", "xep_0092"):
            self.register_plugin(plugin)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.enable_plaintext = False
        self.enable_direct_tls = False


class Suite:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.domain = args.component_domain
        self.clients: list[Any] = []
        self.results: list[tuple[str, str, str]] = []

    def bridge(self, label: str, secret: str) -> Bridge:
        b = Bridge(label, self.domain, secret, self.args.host, self.args.component_port)
        self.clients.append(b)
        return b

    async def step_wrong_secret(self) -> None:
        wrong = self.bridge("bridge (wrong secret)", "not-the-secret")
        wrong.connect()
        await wait_for(lambda: wrong.stream_errors or wrong.disconnects, "the refusal")
        check(not wrong.session_started, "a component with a wrong secret started a session")
        check("not-authorized" in wrong.stream_errors or wrong.disconnects, f"refused how? {wrong.stream_errors}")
        wrong.abort()

    async def step_connect(self) -> None:
        self.component = self.bridge("bridge", self.args.component_secret)
        self.component.connect()
        await wait_for(lambda: self.component.session_started or self.component.stream_errors, "the component's handshake")
        check(self.component.session_started, f"the component was refused: {self.component.stream_errors}")
        self.carol = Client("carol", f"carol@{self.args.domain}/desk", self.args.carol_password)
        self.clients.append(self.carol)
        self.carol.connect(self.args.host, self.args.port)
        await wait_for(lambda: self.carol.session_started or self.carol.stream_errors, "carol's session")
        check(self.carol.session_started, f"carol could not log in: {self.carol.stream_errors}")

    async def step_echo(self) -> None:
        self.carol.send_message(mto=f"echo@{self.domain}", mbody="ping over the bridge", mtype="chat")
        reply = await wait_for(lambda: next((m for m in self.carol.messages if m["body"] == "echo: ping over the bridge"), None),
                               "the component's echo")
        check(reply["from"].bare == f"echo@{self.domain}", f"the echo came from {reply['from']}")

    async def step_iqs(self) -> None:
        version = await iq_call("carol", "version of the component",
                                self.carol.plugin["xep_0092"].get_version(self.domain, timeout=STEP_TIMEOUT))
        check(version["software_version"]["name"] == "interop-bridge", f"version answer: {version}")
        info = await iq_call("bridge", "disco#info of the server",
                             self.component.plugin["xep_0030"].get_info(jid=self.args.domain, ifrom=self.domain, timeout=STEP_TIMEOUT))
        check(info["disco_info"]["identities"], f"the server's disco#info: {info}")

    async def step_push(self) -> None:
        enable = ET.fromstring(
            f"<enable xmlns='urn:xmpp:push:0' jid='{self.domain}' node='carols-phone'>"
            "<x xmlns='jabber:x:data' type='submit'>"
            "<field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#publish-options</value></field>"
            "<field var='secret'><value>app-secret</value></field></x></enable>")
        iq = self.carol.Iq(stype="set")
        iq.append(enable)
        await iq_call("carol", "push enable", iq.send(timeout=STEP_TIMEOUT))
        self.carol.disconnect()
        await wait_for(lambda: self.carol.disconnects, "carol to go offline")
        dave = Client("dave", f"dave@{self.args.domain}/desk", self.args.dave_password)
        self.clients.append(dave)
        dave.connect(self.args.host, self.args.port)
        await wait_for(lambda: dave.session_started or dave.stream_errors, "dave's session")
        dave.send_message(mto=f"carol@{self.args.domain}", mbody="a secret to keep", mtype="chat")
        publish = await wait_for(lambda: self.component.publishes[0] if self.component.publishes else None, "the push notification")
        xml = str(publish)
        check(publish["from"].bare == f"carol@{self.args.domain}", f"published from {publish['from']}")
        for expected in ("carols-phone", "urn:xmpp:push:summary", "message-count", "app-secret"):
            check(expected in xml, f"{expected} missing from {xml}")
        check("a secret to keep" not in xml, f"the body leaked to the app server: {xml}")
        self.carol = Client("carol", f"carol@{self.args.domain}/desk", self.args.carol_password)
        self.clients.append(self.carol)
        self.carol.connect(self.args.host, self.args.port)
        await wait_for(lambda: self.carol.session_started or self.carol.stream_errors, "carol's session again")

    async def step_gone(self) -> None:
        self.component.disconnect()
        await wait_for(lambda: self.component.disconnects, "the component to leave")
        before = len(self.carol.messages)
        self.carol.send_message(mto=f"echo@{self.domain}", mbody="anyone there?", mtype="chat")
        error = await wait_for(lambda: next((m for m in self.carol.messages[before:] if m["type"] == "error"), None),
                               "an error for the message")
        check(error["error"]["condition"] == "service-unavailable", f"the error: {error}")

    async def run(self) -> bool:
        steps = [
            ("XEP-0114: a component with a wrong secret is refused", self.step_wrong_secret),
            ("XEP-0114: the component connects, carol logs in", self.step_connect),
            ("a message to the component's domain reaches it, and its reply comes back", self.step_echo),
            ("iqs both ways: carol asks the component, the component asks the server", self.step_iqs),
            ("XEP-0357: the component as carol's push app server gets a notification", self.step_push),
            ("a component that left: messages for it bounce with service-unavailable", self.step_gone),
        ]
        return await run_chain(self.results, self.clients, steps, 3 * STEP_TIMEOUT)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="c2s (STARTTLS) port")
    p.add_argument("--domain", default="localhost")
    p.add_argument("--carol-password", required=True)
    p.add_argument("--dave-password", required=True)
    p.add_argument("--component-port", type=int, required=True)
    p.add_argument("--component-domain", required=True)
    p.add_argument("--component-secret", required=True)
    p.add_argument("--debug", action="store_true")
    args = p.parse_args()
    harness.setup_logging(args.debug)
    return asyncio.run(run_suite(Suite(args), OVERALL_TIMEOUT, "slixmpp component interop summary", "interop-component"))


if __name__ == "__main__":
    raise SystemExit(main())
