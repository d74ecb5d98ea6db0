#!/usr/bin/env python3
"""Interop suite for the modern extensions: slixmpp's own plugins against a real server.

Started by tests/interop/run.sh after slixmpp_suite.py, against the same server. run.sh
creates carol, dave and erin with the admin CLI and passes their passwords. Every client
is an unmodified slixmpp using its stock plugins. The scenario:

  1. carol logs in twice (laptop, phone), dave and erin once; all send initial presence
  2. carol and dave become mutual contacts (roster + presence subscription)
  3. XEP-0198: dave's stream has resumable stream management; its TCP connection is
     killed abruptly, carol writes to dave meanwhile, dave reconnects and resumes
     (session_resumed) on the same full JID and gets carol's messages
  4. XEP-0280: both of carol's resources enable carbons; dave -> carol/laptop is copied to
     carol/phone (carbon_received), carol/laptop -> dave is copied to carol/phone
     (carbon_sent)
  5. XEP-0313 + XEP-0359: dave sends carol 5 messages; carol's archive, queried with the
     plugin (iterate with RSM max=2, and retrieve page by page with max=2), holds exactly
     them in order, with the ids the live copies carried in <stanza-id/>
  6. XEP-0191: carol blocks erin (blocklist shows erin, carol's other resource gets the
     push); erin's message is refused with an error and never reaches carol; after
     unblocking it arrives
  7. XEP-0163/0115/0060: dave declares +notify interest with xep_0163.add_interest (which
     updates his caps), carol publishes to her PEP node with publish-options, and dave
     gets the event
  8. XEP-0223 (private PEP storage via xep_0223 helpers): store and read back
  9. XEP-0363: carol uploads a file with xep_0363.upload_file (service found through
     disco, slot, HTTP PUT by slixmpp's aiohttp), and the GET URL returns its bytes, in
     whole and by range
 10. every stream closes cleanly

Steps 1-2 are required by the rest; later steps run regardless of each other. Exit
status 0 only if every step passed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import secrets
import ssl
import sys
import time
import traceback
from typing import Any

import aiohttp
from harness import STEP_TIMEOUT, Failure, check, iq_call, parse_args, run_step, run_suite, say, wait_for
from slixmpp import JID, ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import ET, ElementBase

OVERALL_TIMEOUT = 80.0
SID_NS = "urn:xmpp:sid:0"
PEP_NODE = "urn:example:jabberwock:interop:mood"
PRIVATE_NODE = "urn:example:jabberwock:interop:private"


class Client(ClientXMPP):
    """A slixmpp client with the modern plugins that records what it receives."""

    def __init__(self, label: str, jid: str, password: str) -> None:
        super().__init__(jid, password)
        self.label = label
        for plugin in ("xep_0030", "xep_0199", "xep_0198", "xep_0280", "xep_0297", "xep_0059",
                       "xep_0313", "xep_0191", "xep_0004", "xep_0060", "xep_0115", "xep_0163",
                       "xep_0223", "xep_0363"):
            self.register_plugin(plugin)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.auto_authorize = None
        self.auto_subscribe = False
        self.enable_plaintext = False
        self.enable_direct_tls = False
        self.enable_starttls = True

        self.session_started = False
        self.failed_auth: list[Any] = []
        self.disconnects = 0
        self.disconnect_reasons: list[Any] = []
        self.stream_errors: list[str] = []
        self.handler_errors: list[str] = []
        self.sm_enabled: list[Any] = []
        self.sm_failed: list[str] = []
        self.resumed: list[Any] = []
        self.messages: list[dict[str, Any]] = []
        self.message_errors: list[dict[str, Any]] = []
        self.carbons_received: list[dict[str, Any]] = []
        self.carbons_sent: list[dict[str, Any]] = []
        self.block_pushes: list[list[str]] = []
        self.unblock_pushes: list[list[str]] = []
        self.pep_events: list[dict[str, Any]] = []
        self.presences: list[dict[str, Any]] = []
        self.subscribe_requests: list[str] = []
        self.roster_pushes: list[dict[str, dict[str, Any]]] = []
        self.trace: collections.deque[str] = collections.deque(maxlen=40)

        on = self.add_event_handler
        on("session_start", lambda _e: setattr(self, "session_started", True))
        on("failed_auth", lambda f: self.failed_auth.append(f["condition"]))
        on("disconnected", self._on_disconnected)
        on("stream_error", lambda e: self.stream_errors.append(f"{e['condition']} {e['text']!r}"))
        on("sm_enabled", lambda s: self.sm_enabled.append(dict(s.xml.attrib)))
        on("sm_failed", lambda s: self.sm_failed.append(str(s)))
        on("session_resumed", lambda s: self.resumed.append(dict(s.xml.attrib)))
        on("message", self._on_message)
        on("message_error", self._on_message_error)
        on("carbon_received", self._on_carbon_received)
        on("carbon_sent", self._on_carbon_sent)
        on("blocked", lambda iq: self.block_pushes.append([str(i["jid"]) for i in iq["block"]["items"]]))
        on("unblocked", lambda iq: self.unblock_pushes.append([str(i["jid"]) for i in iq["unblock"]["items"]]))
        on("pubsub_publish", self._on_pubsub_publish)
        on("presence", self._on_presence)
        on("roster_update", self._on_roster_update)
        self.add_filter("in", self._trace_in)
        self.add_filter("out", self._trace_out)

    def _trace_in(self, stanza):
        self.trace.append(f"RECV {stanza}")
        return stanza

    def _trace_out(self, stanza):
        self.trace.append(f"SEND {stanza}")
        return stanza

    def exception(self, exception: Exception) -> None:
        self.handler_errors.append("".join(traceback.format_exception(exception)).rstrip())
        super().exception(exception)

    def _on_disconnected(self, reason) -> None:
        self.disconnects += 1
        self.disconnect_reasons.append(reason)

    def _on_message(self, msg) -> None:
        if not msg["body"]:
            return
        sid = msg.xml.find(f"{{{SID_NS}}}stanza-id")
        self.messages.append({
            "from": JID(msg["from"]), "to": JID(msg["to"]), "type": msg["type"], "body": msg["body"],
            "stanza_id": None if sid is None else dict(sid.attrib),
        })

    def _on_message_error(self, msg) -> None:
        self.message_errors.append({"from": JID(msg["from"]), "condition": msg["error"]["condition"],
                                    "type": msg["error"]["type"], "xml": str(msg)})

    def _on_carbon_received(self, msg) -> None:
        inner = msg["carbon_received"]
        self.carbons_received.append({"from": JID(inner["from"]), "to": JID(inner["to"]), "body": inner["body"]})

    def _on_carbon_sent(self, msg) -> None:
        inner = msg["carbon_sent"]
        self.carbons_sent.append({"from": JID(inner["from"]), "to": JID(inner["to"]), "body": inner["body"]})

    def _on_pubsub_publish(self, msg) -> None:
        item = msg["pubsub_event"]["items"]["item"]
        payload = item.xml.find(f"{{{PEP_NODE}}}mood")
        self.pep_events.append({"from": JID(msg["from"]), "node": msg["pubsub_event"]["items"]["node"],
                                "id": item["id"], "text": None if payload is None else payload.text})

    def _on_presence(self, pres) -> None:
        if pres["type"] == "subscribe":
            self.subscribe_requests.append(JID(pres["from"]).bare)
        self.presences.append({"from": JID(pres["from"]), "type": pres["type"]})

    def _on_roster_update(self, iq) -> None:
        if iq["type"] == "set":
            self.roster_pushes.append({str(j): dict(i) for j, i in iq["roster"]["items"].items()})

    def bodies_from(self, bare: str) -> list[str]:
        return [m["body"] for m in self.messages if m["from"].bare == bare]

    async def barrier(self) -> None:
        """Pings the server: once answered, everything sent before has been processed."""
        await iq_call(self.label, "ping to the server",
                      self.plugin["xep_0199"].send_ping(JID(self.boundjid.domain), timeout=STEP_TIMEOUT))

    def describe(self) -> str:
        lines = [f"--- {self.label} ({self.boundjid.full or self.requested_jid}) ---",
                 f"  session_started={self.session_started} failed_auth={self.failed_auth}"
                 f" disconnects={self.disconnects} stream_errors={self.stream_errors}"
                 f" sm_enabled={self.sm_enabled} sm_failed={self.sm_failed} resumed={self.resumed}"]
        lines += ["  " + t for t in self.trace]
        return "\n".join(lines)


class Suite:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.domain = args.domain
        self.carol_jid = f"carol@{self.domain}"
        self.dave_jid = f"dave@{self.domain}"
        self.erin_jid = f"erin@{self.domain}"
        self.clients: list[Client] = []
        self.results: list[tuple[str, str, str]] = []
        self.run_tag = secrets.token_hex(3)

    def client(self, label: str, jid: str, password: str) -> Client:
        c = Client(label, jid, password)
        self.clients.append(c)
        return c

    async def login(self, c: Client) -> None:
        c.connect(self.args.host, self.args.port)
        try:
            await wait_for(lambda: c.session_started or c.failed_auth or c.stream_errors,
                           f"{c.label}'s session to start")
        except Failure:
            c.cancel_connection_attempt()
            c.abort()
            raise
        check(not c.failed_auth, f"{c.label}: authentication failed: {c.failed_auth}")
        check(not c.stream_errors, f"{c.label}: stream error during login: {c.stream_errors}")
        say(f"  {c.label}: session {c.boundjid.full}")

    async def logout(self, c: Client) -> None:
        if not c.transport:
            return
        before = c.disconnects
        await c.disconnect(wait=5)
        await wait_for(lambda: c.disconnects > before, f"{c.label} to be disconnected")
        reason = c.disconnect_reasons[-1]
        check(reason == "End of stream",
              f"{c.label}: the server did not answer our </stream:stream> (disconnect reason: {reason!r})")

    # -- steps -------------------------------------------------------------------------

    async def step_login(self) -> None:
        a = self.args
        self.laptop = self.client("carol/laptop", f"{self.carol_jid}/laptop", a.carol_password)
        self.phone = self.client("carol/phone", f"{self.carol_jid}/phone", a.carol_password)
        self.dave = self.client("dave", f"{self.dave_jid}/desk", a.dave_password)
        self.erin = self.client("erin", f"{self.erin_jid}/tablet", a.erin_password)
        for c in self.clients:
            await self.login(c)
            await iq_call(c.label, "roster get", c.get_roster(timeout=STEP_TIMEOUT))
            c.send_presence()
        for c in self.clients:
            await wait_for(lambda c=c: c.sm_enabled, f"{c.label}: XEP-0198 <enabled/> after binding")

    async def step_subscription(self) -> None:
        carol, dave = self.laptop, self.dave
        carol.send_presence_subscription(pto=self.dave_jid, ptype="subscribe")
        await wait_for(lambda: self.carol_jid in dave.subscribe_requests, "dave to get carol's subscribe")
        dave.send_presence(pto=self.carol_jid, ptype="subscribed")
        dave.send_presence_subscription(pto=self.carol_jid, ptype="subscribe")
        await wait_for(lambda: self.dave_jid in carol.subscribe_requests, "carol to get dave's subscribe")
        carol.send_presence(pto=self.dave_jid, ptype="subscribed")

        def both(c: Client, other: str):
            return any(p.get(other, {}).get("subscription") == "both" for p in c.roster_pushes)

        await wait_for(lambda: both(carol, self.dave_jid), "carol's roster push with dave at 'both'")
        await wait_for(lambda: both(dave, self.carol_jid), "dave's roster push with carol at 'both'")

    async def step_sm_resume(self) -> None:
        dave, carol = self.dave, self.laptop
        enabled = dave.sm_enabled[-1]
        check(enabled.get("resume") in ("true", "1"), f"dave: <enabled/> does not allow resumption: {enabled}")
        check(enabled.get("id"), f"dave: <enabled/> has no id: {enabled}")
        sm = dave.plugin["xep_0198"]
        check(sm.sm_id, "dave: slixmpp stored no stream-management id")
        full = dave.boundjid.full
        # Something acknowledged before the kill, so 'h' is not trivially 0.
        before = f"before the drop {self.run_tag}"
        carol.send_message(mto=full, mbody=before, mtype="chat")
        await wait_for(lambda: before in dave.bodies_from(self.carol_jid), "dave to get the message before the drop")

        disconnects = dave.disconnects
        say(f"  aborting dave's TCP connection (stream id {sm.sm_id})")
        dave.abort()
        await wait_for(lambda: dave.disconnects > disconnects, "slixmpp to notice its dropped connection")
        meanwhile = [f"while dave was away {i} {self.run_tag}" for i in (1, 2)]
        carol.send_message(mto=full, mbody=meanwhile[0], mtype="chat")
        await asyncio.sleep(0.5)
        carol.send_message(mto=full, mbody=meanwhile[1], mtype="chat")
        await carol.barrier()
        check(not carol.message_errors, f"carol got errors for messages to the detached session: {carol.message_errors}")

        dave.connect(self.args.host, self.args.port)
        await wait_for(lambda: dave.resumed or dave.sm_failed or dave.stream_errors,
                       "dave's stream to be resumed (<resumed/>)")
        check(not dave.sm_failed, f"dave: the server refused to resume: {dave.sm_failed}")
        check(dave.resumed, f"dave: no session_resumed ({dave.stream_errors})")
        check(dave.resumed[-1].get("previd") == enabled.get("id"),
              f"dave: <resumed previd={dave.resumed[-1].get('previd')!r}/>, want {enabled.get('id')!r}")
        check(dave.boundjid.full == full, f"dave: resumed as {dave.boundjid.full}, want {full}")
        await wait_for(lambda: all(b in dave.bodies_from(self.carol_jid) for b in meanwhile),
                       "dave to receive the messages carol sent while the connection was down")
        got = [b for b in dave.bodies_from(self.carol_jid) if self.run_tag in b]
        check(got == [before] + meanwhile, f"dave: messages {got}, want {[before] + meanwhile} (no duplicates, in order)")
        # The resumed stream works both ways.
        await dave.barrier()
        back = f"dave is back {self.run_tag}"
        dave.send_message(mto=carol.boundjid.full, mbody=back, mtype="chat")
        await wait_for(lambda: back in carol.bodies_from(self.dave_jid), "carol to get dave's message after the resumption")

    async def step_carbons(self) -> None:
        laptop, phone, dave = self.laptop, self.phone, self.dave
        for c in (laptop, phone):
            await iq_call(c.label, "enabling carbons", c.plugin["xep_0280"].enable(timeout=STEP_TIMEOUT))
        incoming = f"dave to carol's laptop, copied to the phone {self.run_tag}"
        dave.send_message(mto=laptop.boundjid.full, mbody=incoming, mtype="chat")
        await wait_for(lambda: incoming in laptop.bodies_from(self.dave_jid), "carol/laptop to get dave's message")
        c = await wait_for(lambda: next((x for x in phone.carbons_received if x["body"] == incoming), None),
                           "carol/phone to get a <received/> carbon of it")
        check(c["from"].full == dave.boundjid.full and c["to"].full == laptop.boundjid.full,
              f"carol/phone: received carbon from={c['from']} to={c['to']},"
              f" want from={dave.boundjid.full} to={laptop.boundjid.full}")
        check(incoming not in phone.bodies_from(self.dave_jid), "carol/phone got the message itself, not a carbon")

        outgoing = f"carol's laptop to dave, copied to the phone {self.run_tag}"
        laptop.send_message(mto=self.dave_jid, mbody=outgoing, mtype="chat")
        await wait_for(lambda: outgoing in dave.bodies_from(self.carol_jid), "dave to get carol's message")
        c = await wait_for(lambda: next((x for x in phone.carbons_sent if x["body"] == outgoing), None),
                           "carol/phone to get a <sent/> carbon of it")
        check(c["from"].full == laptop.boundjid.full and c["to"].bare == self.dave_jid,
              f"carol/phone: sent carbon from={c['from']} to={c['to']}, want from={laptop.boundjid.full} to dave")
        await asyncio.sleep(0.5)
        check(not any(x["body"] == outgoing for x in laptop.carbons_sent),
              "carol/laptop got a carbon of its own message")
        check(not any(x["body"] == incoming for x in laptop.carbons_received),
              "carol/laptop got a carbon of a message addressed to it")

    async def step_mam(self) -> None:
        laptop, dave = self.laptop, self.dave
        tag = secrets.token_hex(3)
        bodies = [f"archived {i} of 5 ({tag})" for i in range(1, 6)]
        for b in bodies:
            dave.send_message(mto=self.carol_jid, mbody=b, mtype="chat")
        await wait_for(lambda: sum(tag in b for b in laptop.bodies_from(self.dave_jid)) == 5,
                       "carol to receive dave's 5 messages live")
        live_ids = {}
        for m in laptop.messages:
            if tag in m["body"]:
                sid = m["stanza_id"]
                check(sid and sid.get("by") == self.carol_jid and sid.get("id"),
                      f"carol: live message {m['body']!r} lacks <stanza-id by='{self.carol_jid}'/>: {sid}")
                live_ids[m["body"]] = sid["id"]

        mam = laptop.plugin["xep_0313"]

        def unpack(msg):
            inner = msg["mam_result"]["forwarded"]["stanza"]
            return {"id": msg["mam_result"]["id"], "body": inner["body"], "from": JID(inner["from"])}

        # The plugin's iterator: RSM pages of 2, followed through to the end.
        results = []
        try:
            async for msg in mam.iterate(with_jid=JID(self.dave_jid), rsm={"max": 2}):
                results.append(unpack(msg))
        except (IqError, IqTimeout) as e:
            raise Failure(f"carol: MAM iterate failed: {e!r}") from None
        got = [r["body"] for r in results if tag in (r["body"] or "")]
        check(got == bodies, f"carol: MAM iterate (max=2) gave {got}, want {bodies}")
        for r in results:
            check(r["from"].bare in (self.dave_jid, self.carol_jid),
                  f"carol: MAM with={self.dave_jid} returned a message from {r['from']}")
            if r["body"] in live_ids:
                check(r["id"] == live_ids[r["body"]],
                      f"carol: archive id {r['id']} of {r['body']!r} differs from the live <stanza-id/> {live_ids[r['body']]}")
        ids = [r["id"] for r in results]
        check(len(set(ids)) == len(ids), f"carol: duplicate archive ids across pages: {ids}")

        # The same, page by page with retrieve(), checking each <fin/>.
        paged, after, pages = [], None, 0
        while True:
            rsm = {"max": 2} if after is None else {"max": 2, "after": after}
            iq = await iq_call(laptop.label, "MAM query", mam.retrieve(with_jid=JID(self.dave_jid), rsm=rsm,
                                                                       timeout=STEP_TIMEOUT))
            pages += 1
            page = [unpack(m) for m in iq["mam"]["results"]]
            fin = iq["mam_fin"]
            check(len(page) <= 2, f"carol: a max=2 page has {len(page)} results")
            if page:
                check(fin["rsm"]["first"] == page[0]["id"] and fin["rsm"]["last"] == page[-1]["id"],
                      f"carol: <fin/> first/last {fin['rsm']['first']}/{fin['rsm']['last']} do not match the page"
                      f" {[p['id'] for p in page]}")
            paged += page
            complete = fin.xml.get("complete") in ("true", "1")
            if complete or not page:
                break
            check(pages < 20, "carol: more than 20 pages of 2 for a handful of messages")
            after = fin["rsm"]["last"]
        check([p["id"] for p in paged] == ids,
              f"carol: paging by hand gave ids {[p['id'] for p in paged]}, iterate gave {ids}")
        say(f"  {len(ids)} archived messages with dave, {pages} pages of at most 2")

        # The newest two, newest first: the plugin's reverse iteration starts with an empty
        # <before/> (RSM's "last page").
        newest = []
        try:
            async for msg in mam.iterate(with_jid=JID(self.dave_jid), reverse=True, rsm={"max": 2}, total=2):
                newest.append(unpack(msg)["body"])
        except (IqError, IqTimeout) as e:
            raise Failure(f"carol: MAM reverse iterate failed: {e!r}") from None
        want = bodies[::-1][:2]
        check(newest == want, f"carol: MAM reverse iterate (max=2, before='') gave {newest}, want {want}")

    async def step_blocking(self) -> None:
        laptop, phone, erin = self.laptop, self.phone, self.erin
        blocking = laptop.plugin["xep_0191"]
        await iq_call(laptop.label, "block erin", blocking.block(JID(self.erin_jid), timeout=STEP_TIMEOUT))
        blocked = await iq_call(laptop.label, "blocklist get", blocking.get_blocked_jids(timeout=STEP_TIMEOUT))
        check({str(j) for j in blocked} == {self.erin_jid}, f"carol: blocklist {blocked}, want only {self.erin_jid}")
        await wait_for(lambda: any(self.erin_jid in p for p in phone.block_pushes),
                       "carol/phone to get the <block/> push")

        refused = f"erin writes while blocked {self.run_tag}"
        erin.send_message(mto=self.carol_jid, mbody=refused, mtype="chat")
        err = await wait_for(lambda: next((e for e in erin.message_errors if e["from"].bare == self.carol_jid), None),
                             "erin to get an error back for her message to carol")
        say(f"  erin's message bounced: {err['type']}/{err['condition']}")
        await asyncio.sleep(0.5)
        for c in (laptop, phone):
            check(refused not in c.bodies_from(self.erin_jid), f"{c.label} received a message from blocked erin")
            check(not any(x["body"] == refused for x in c.carbons_received),
                  f"{c.label} got a carbon of a message from blocked erin")

        await iq_call(laptop.label, "unblock erin", blocking.unblock(JID(self.erin_jid), timeout=STEP_TIMEOUT))
        blocked = await iq_call(laptop.label, "blocklist get", blocking.get_blocked_jids(timeout=STEP_TIMEOUT))
        check(not blocked, f"carol: blocklist after unblocking is {blocked}, want empty")
        await wait_for(lambda: any(self.erin_jid in p for p in phone.unblock_pushes),
                       "carol/phone to get the <unblock/> push")
        allowed = f"erin writes after the unblock {self.run_tag}"
        erin.send_message(mto=laptop.boundjid.full, mbody=allowed, mtype="chat")
        await wait_for(lambda: allowed in laptop.bodies_from(self.erin_jid), "carol to get erin's message after unblocking")

    async def step_pep(self) -> None:
        laptop, dave = self.laptop, self.dave
        # +notify interest through the plugin: adds the disco feature and recomputes the
        # caps hash; the new hash goes out with the next presence.
        caps = dave.plugin["xep_0115"]
        ver_before = await caps.get_verstring(dave.boundjid)
        dave.plugin["xep_0163"].add_interest(PEP_NODE)
        deadline = time.monotonic() + STEP_TIMEOUT
        while await caps.get_verstring(dave.boundjid) in (None, ver_before):
            check(time.monotonic() < deadline, "slixmpp did not recompute dave's caps hash after add_interest")
            await asyncio.sleep(0.05)
        dave.send_presence()
        await dave.barrier()

        form = laptop.plugin["xep_0004"].make_form(ftype="submit")
        form.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#publish-options")
        form.add_field(var="pubsub#access_model", value="presence")
        form.add_field(var="pubsub#persist_items", value="true")

        def payload(text: str):
            el = ET.Element(f"{{{PEP_NODE}}}mood")
            el.text = text
            return el

        first = f"first mood {self.run_tag}"
        await iq_call(laptop.label, "PEP publish with publish-options",
                      laptop.plugin["xep_0060"].publish(None, PEP_NODE, id="current", payload=payload(first),
                                                        options=form, timeout=STEP_TIMEOUT))
        # Either live, or as the last item once the server has resolved dave's new caps.
        ev = await wait_for(lambda: next((e for e in dave.pep_events if e["text"] == first), None),
                            "dave to get the PEP event for carol's first item")
        check(ev["from"].bare == self.carol_jid and ev["node"] == PEP_NODE,
              f"dave: event from={ev['from']} node={ev['node']}, want carol's {PEP_NODE}")
        second = f"second mood {self.run_tag}"
        await iq_call(laptop.label, "second PEP publish",
                      laptop.plugin["xep_0060"].publish(None, PEP_NODE, id="current", payload=payload(second),
                                                        options=form, timeout=STEP_TIMEOUT))
        await wait_for(lambda: any(e["text"] == second for e in dave.pep_events),
                       "dave to get the live PEP event for carol's second item")
        # erin is not a contact: the presence access model keeps the node from her.
        try:
            await erin_items(self.erin, self.carol_jid)
        except IqError as e:
            say(f"  erin (no subscription) may not read the node: {e.iq['error']['condition']}")
        else:
            raise Failure("erin, not subscribed to carol, read carol's presence-access PEP node")

    async def step_private_storage(self) -> None:
        laptop, phone = self.laptop, self.phone
        secret = f"private note {self.run_tag}"
        storage = PrivateNote()
        storage.xml.text = secret
        await iq_call(laptop.label, "xep_0223 store",
                      laptop.plugin["xep_0223"].store(storage, node=PRIVATE_NODE, id="current", timeout=STEP_TIMEOUT))
        iq = await iq_call(phone.label, "xep_0223 retrieve",
                           phone.plugin["xep_0223"].retrieve(PRIVATE_NODE, id="current", timeout=STEP_TIMEOUT))
        note = iq.xml.find(f".//{{{PRIVATE_NODE}}}note")
        check(note is not None and note.text == secret, f"carol/phone: stored item reads back as {iq}")
        try:
            await self.dave.plugin["xep_0060"].get_item(JID(self.carol_jid), PRIVATE_NODE, "current",
                                                        timeout=STEP_TIMEOUT)
        except IqError as e:
            say(f"  dave may not read carol's whitelist node: {e.iq['error']['condition']}")
        else:
            raise Failure("dave read carol's private (whitelist) PEP node")

    async def step_upload(self) -> None:
        data = secrets.token_bytes(300_000)
        url = await self.laptop.plugin["xep_0363"].upload_file(
            "interop photo.png", size=len(data), content_type="image/png", input_file=io.BytesIO(data),
            timeout=STEP_TIMEOUT)
        check(url.startswith("http"), f"carol: upload_file returned {url!r}")
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as r:
                body = await r.read()
                check(r.status == 200 and body == data, f"GET {url}: {r.status}, {len(body)} bytes")
                check(r.headers.get("Content-Type") == "image/png", f"GET {url}: type {r.headers.get('Content-Type')}")
            async with http.get(url, headers={"Range": "bytes=100-199"}) as r:
                part = await r.read()
                check(r.status == 206 and part == data[100:200], f"GET {url} bytes 100-199: {r.status}, {len(part)} bytes")

    async def step_disconnect_all(self) -> None:
        for c in self.clients:
            await self.logout(c)

    # -- driver ------------------------------------------------------------------------

    async def run(self) -> bool:
        required = [
            ("carol (2 resources), dave and erin log in with XEP-0198 enabled", self.step_login),
            ("carol and dave become mutual contacts", self.step_subscription),
        ]
        independent = [
            ("XEP-0198: dave's killed TCP connection is resumed, messages sent meanwhile arrive", self.step_sm_resume),
            ("XEP-0280: carbons of received and sent messages reach carol's other resource", self.step_carbons),
            ("XEP-0313/0359: carol's archive via the MAM plugin, RSM pages of 2, stanza-ids", self.step_mam),
            ("XEP-0191: carol blocks erin, erin's message bounces; unblock lets it through", self.step_blocking),
            ("XEP-0163/0115: +notify via add_interest, PEP publish with publish-options reaches dave",
             self.step_pep),
            ("XEP-0223: private PEP storage round trip, closed to others", self.step_private_storage),
            ("XEP-0363: a file uploaded with the plugin comes back from its GET URL", self.step_upload),
        ]
        broken = False
        for name, step in required:
            if broken:
                self.results.append((name, "skipped", "an earlier step failed"))
                continue
            broken = not await self.run_step(name, step)
        for name, step in independent:
            if broken:
                self.results.append((name, "skipped", "logging in failed"))
                continue
            await self.run_step(name, step)
        await self.run_step("every stream closes cleanly", self.step_disconnect_all)
        errors = [f"{c.label}: {e}" for c in self.clients for e in c.handler_errors]
        self.results.append(("no exceptions in slixmpp handlers", "failed" if errors else "passed", "\n".join(errors)))
        return all(status != "failed" for _, status, _ in self.results)

    async def run_step(self, name: str, step) -> bool:
        return await run_step(self.results, self.clients, name, step, 3 * STEP_TIMEOUT)


class PrivateNote(ElementBase):
    name = "note"
    namespace = PRIVATE_NODE
    plugin_attrib = "private_note"


async def erin_items(erin: Client, owner: str):
    return await erin.plugin["xep_0060"].get_items(JID(owner), PEP_NODE, timeout=STEP_TIMEOUT)


def main() -> int:
    args = parse_args(__doc__.splitlines()[0], ["carol", "dave", "erin"])
    return asyncio.run(run_suite(Suite(args), OVERALL_TIMEOUT, "slixmpp modern-extensions interop summary", "interop-modern"))


if __name__ == "__main__":
    sys.exit(main())
