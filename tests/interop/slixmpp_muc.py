#!/usr/bin/env python3
"""Group chat interop suite: slixmpp's XEP-0045 plugins against a real server.

Started by tests/interop/run.sh after the other suites, against the same server, with
the accounts carol, dave and erin. Every client is an unmodified slixmpp with its stock
plugins (xep_0045, xep_0249, xep_0313, xep_0199). The scenario:

  1. carol logs in twice (laptop, phone), dave and erin once
  2. carol creates a room (status 201), reads the muc#roomconfig form and submits it:
     a name, persistent, members-only; the room's disco#info says so
  3. carol makes dave a member; dave joins; erin, no member, gets registration-required
  4. groupchat both ways, with the room's stanza-id; carol's second device joins under
     the same nick: dave sees one carol, and a message reaches both of carol's devices
  5. private messages through the room; a subject change reaches dave
  6. XEP-0410: dave pings his own occupant JID; erin, not joined, gets not-acceptable
  7. XEP-0313 on the room: dave pages through the room's archive
  8. XEP-0249: carol invites erin directly; erin becomes a member and joins, is kicked
     (307), is banned and refused (forbidden)
  9. bookmarks: carol/laptop publishes a XEP-0402 bookmark (xep_0060 with publish-options),
     carol/phone reads it as XEP-0048 bookmarks (xep_0048 over private storage), stores
     a new list there, and carol/laptop finds exactly that list in the PEP node
 10. dave leaves and carol sees him go; every stream closes cleanly

Exit status 0 only if every step passed.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import secrets
import ssl
import sys
import traceback
from typing import Any

from harness import STEP_TIMEOUT, Failure, check, iq_call, parse_args, run_step, run_suite, wait_for
from slixmpp import JID, ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout, PresenceError
from slixmpp.plugins.xep_0048.stanza import Bookmarks as LegacyBookmarks
from slixmpp.plugins.xep_0402.stanza import Conference

OVERALL_TIMEOUT = 80.0
SID_NS = "urn:xmpp:sid:0"


class Client(ClientXMPP):
    """A slixmpp client with the MUC plugins that records what rooms send it."""

    def __init__(self, label: str, jid: str, password: str) -> None:
        super().__init__(jid, password)
        self.label = label
        for plugin in ("xep_0030", "xep_0004", "xep_0045", "xep_0249", "xep_0059", "xep_0297", "xep_0313", "xep_0199",
                       "xep_0060", "xep_0402", "xep_0048"):
            self.register_plugin(plugin)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.enable_plaintext = False
        self.enable_direct_tls = False
        self.session_started = False
        self.failed_auth: list[Any] = []
        self.stream_errors: list[str] = []
        self.handler_errors: list[str] = []
        self.disconnects = 0
        self.groupchat: list[dict[str, Any]] = []
        self.private: list[dict[str, Any]] = []
        self.subjects: list[str] = []
        self.room_presence: list[dict[str, Any]] = []
        self.invites: list[str] = []
        self.trace: collections.deque[str] = collections.deque(maxlen=40)
        on = self.add_event_handler
        on("session_start", lambda _e: setattr(self, "session_started", True))
        on("failed_auth", lambda f: self.failed_auth.append(f["condition"]))
        on("stream_error", lambda e: self.stream_errors.append(f"{e['condition']} {e['text']!r}"))
        on("disconnected", lambda _r: setattr(self, "disconnects", self.disconnects + 1))
        on("groupchat_message", self._on_groupchat)
        on("groupchat_subject", lambda m: self.subjects.append(m["subject"]))
        on("groupchat_presence", self._on_room_presence)
        on("groupchat_direct_invite", lambda m: self.invites.append(str(m["groupchat_invite"]["jid"])))
        on("message", self._on_message)
        self.add_filter("in", lambda s: self.trace.append(f"RECV {s}") or s)
        self.add_filter("out", lambda s: self.trace.append(f"SEND {s}") or s)

    def exception(self, exception: Exception) -> None:
        self.handler_errors.append("".join(traceback.format_exception(exception)).rstrip())
        super().exception(exception)

    def _on_groupchat(self, msg) -> None:
        if not msg["body"]:
            return
        sid = msg.xml.find(f"{{{SID_NS}}}stanza-id")
        self.groupchat.append({"from": JID(msg["from"]), "body": msg["body"],
                               "stanza_id": None if sid is None else dict(sid.attrib)})

    def _on_message(self, msg) -> None:
        if msg["type"] in ("chat", "normal") and msg["body"] and msg["from"].resource:
            self.private.append({"from": JID(msg["from"]), "body": msg["body"]})

    def _on_room_presence(self, pres) -> None:
        self.room_presence.append({"from": JID(pres["from"]), "type": pres["type"],
                                   "codes": set(pres["muc"]["status_codes"])})

    def bodies(self) -> list[str]:
        return [m["body"] for m in self.groupchat]

    def describe(self) -> str:
        lines = [f"--- {self.label} ({self.boundjid.full}) ---",
                 f"  session_started={self.session_started} failed_auth={self.failed_auth}"
                 f" stream_errors={self.stream_errors}"]
        return "\n".join(lines + ["  " + t for t in self.trace])


class Suite:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        d = args.domain
        self.room = JID(f"interop-{secrets.token_hex(3)}@conference.{d}")
        self.carol_jid, self.dave_jid, self.erin_jid = f"carol@{d}", f"dave@{d}", f"erin@{d}"
        self.clients: list[Client] = []
        self.results: list[tuple[str, str, str]] = []

    def client(self, label: str, jid: str, password: str) -> Client:
        c = Client(label, jid, password)
        self.clients.append(c)
        return c

    async def login(self, c: Client) -> None:
        c.connect(self.args.host, self.args.port)
        await wait_for(lambda: c.session_started or c.failed_auth or c.stream_errors, f"{c.label}'s session to start")
        check(c.session_started, f"{c.label}: login failed: {c.failed_auth} {c.stream_errors}")
        c.send_presence()

    def muc(self, c: Client):
        return c.plugin["xep_0045"]

    async def join(self, c: Client, nick: str, **kw):
        try:
            return await self.muc(c).join_muc_wait(self.room, nick, timeout=STEP_TIMEOUT, **kw)
        except asyncio.TimeoutError:
            raise Failure(f"{c.label}: joining {self.room} as {nick} timed out") from None

    async def refused_join(self, c: Client, nick: str, condition: str) -> None:
        try:
            await self.join(c, nick)
        except PresenceError as e:
            got = e.presence["error"]["condition"]
            check(got == condition, f"{c.label}: join refused with {got}, want {condition}")
            return
        raise Failure(f"{c.label}: joined {self.room}, want {condition}")

    # -- steps -------------------------------------------------------------------------

    async def step_login(self) -> None:
        a = self.args
        self.laptop = self.client("carol/laptop", f"{self.carol_jid}/muc-laptop", a.carol_password)
        self.phone = self.client("carol/phone", f"{self.carol_jid}/muc-phone", a.carol_password)
        self.dave = self.client("dave", f"{self.dave_jid}/muc-desk", a.dave_password)
        self.erin = self.client("erin", f"{self.erin_jid}/muc-tablet", a.erin_password)
        for c in self.clients:
            await self.login(c)

    async def step_create(self) -> None:
        pres, _subject, _occupants, _history = await self.join(self.laptop, "carol")
        codes = set(pres["muc"]["status_codes"])
        check({110, 201} <= codes, f"carol: creating the room gave status codes {codes}, want 110 and 201")
        check(pres["muc"]["affiliation"] == "owner", f"carol: affiliation {pres['muc']['affiliation']}, want owner")
        form = await iq_call("carol", "get_room_config", self.muc(self.laptop).get_room_config(self.room, timeout=STEP_TIMEOUT))
        fields = form.get_fields()
        for var in ("muc#roomconfig_roomname", "muc#roomconfig_membersonly", "muc#roomconfig_persistentroom"):
            check(var in fields, f"carol: the configuration form lacks {var}: {list(fields)}")
        form.set_values({"muc#roomconfig_roomname": "Interop room", "muc#roomconfig_membersonly": True,
                         "muc#roomconfig_persistentroom": True})
        await iq_call("carol", "set_room_config", self.muc(self.laptop).set_room_config(self.room, form, timeout=STEP_TIMEOUT))
        info = await iq_call("carol", "room disco#info",
                             self.laptop.plugin["xep_0030"].get_info(jid=self.room, timeout=STEP_TIMEOUT))
        features = set(info["disco_info"]["features"])
        for f in ("http://jabber.org/protocol/muc", "muc_membersonly", "muc_persistent", "urn:xmpp:mam:2"):
            check(f in features, f"the room's disco#info lacks {f}: {sorted(features)}")

    async def step_members(self) -> None:
        await iq_call("carol", "set_affiliation member",
                      self.muc(self.laptop).set_affiliation(self.room, "member", jid=JID(self.dave_jid), timeout=STEP_TIMEOUT))
        members = await iq_call("carol", "member list",
                                self.muc(self.laptop).get_affiliation_list(self.room, "member", timeout=STEP_TIMEOUT))
        check(JID(self.dave_jid) in [JID(m) for m in members], f"carol: member list {members} lacks dave")
        await self.join(self.dave, "dave")
        await wait_for(lambda: "dave" in self.muc(self.laptop).get_roster(self.room), "carol to see dave in the room")
        await self.refused_join(self.erin, "erin", "registration-required")

    async def step_talk(self) -> None:
        tag = secrets.token_hex(3)
        self.dave.send_message(mto=self.room, mbody=f"hello from dave {tag}", mtype="groupchat")
        await wait_for(lambda: f"hello from dave {tag}" in self.laptop.bodies(), "carol to get dave's message")
        got = next(m for m in self.laptop.groupchat if m["body"] == f"hello from dave {tag}")
        check(got["from"] == JID(f"{self.room}/dave"), f"carol: dave's message came from {got['from']}")
        check(got["stanza_id"] and got["stanza_id"].get("by") == str(self.room),
              f"carol: no stanza-id by the room: {got['stanza_id']}")
        await self.join(self.phone, "carol")
        await asyncio.sleep(0.3)
        carols = [p for p in self.dave.room_presence if p["from"] == JID(f"{self.room}/carol") and p["type"] != "unavailable"]
        check(len(carols) == 1, f"dave saw carol's presence {len(carols)} times; one occupant expected")
        self.dave.send_message(mto=self.room, mbody=f"to both devices {tag}", mtype="groupchat")
        for c in (self.laptop, self.phone):
            await wait_for(lambda c=c: f"to both devices {tag}" in c.bodies(), f"{c.label} to get the message")

    async def step_private_and_subject(self) -> None:
        tag = secrets.token_hex(3)
        self.dave.send_message(mto=JID(f"{self.room}/carol"), mbody=f"psst {tag}", mtype="chat")
        for c in (self.laptop, self.phone):
            await wait_for(lambda c=c: any(p["body"] == f"psst {tag}" for p in c.private), f"{c.label}: dave's private message")
        pm = next(p for p in self.laptop.private if p["body"] == f"psst {tag}")
        check(pm["from"] == JID(f"{self.room}/dave"), f"carol: the private message came from {pm['from']}")
        self.muc(self.laptop).set_subject(self.room, f"Topic {tag}")
        await wait_for(lambda: f"Topic {tag}" in self.dave.subjects, "dave to see the new subject")

    async def step_self_ping(self) -> None:
        ping = self.dave.plugin["xep_0199"]
        await iq_call("dave", "self-ping", ping.send_ping(JID(f"{self.room}/dave"), timeout=STEP_TIMEOUT))
        try:
            await self.erin.plugin["xep_0199"].send_ping(JID(f"{self.room}/dave"), timeout=STEP_TIMEOUT)
        except IqError as e:
            got = e.iq["error"]["condition"]
            check(got == "not-acceptable", f"erin: ping of an occupant JID while not joined gave {got}")
            return
        raise Failure("erin: a ping to an occupant JID while not joined was answered")

    async def step_archive(self) -> None:
        tag = secrets.token_hex(3)
        bodies = [f"archived {i} {tag}" for i in range(3)]
        for b in bodies:
            self.laptop.send_message(mto=self.room, mbody=b, mtype="groupchat")
        await wait_for(lambda: all(b in self.dave.bodies() for b in bodies), "dave to get carol's messages")
        mam = self.dave.plugin["xep_0313"]
        got = []
        try:
            async for msg in mam.iterate(jid=self.room, rsm={"max": 2}, reverse=True):
                got.append(msg["mam_result"]["forwarded"]["stanza"]["body"])
        except (IqError, IqTimeout) as e:
            raise Failure(f"dave: MAM on the room failed: {e!r}") from None
        recent = [b for b in got if tag in b]
        check(sorted(recent) == sorted(bodies), f"dave: the room archive gave {recent}, want {bodies}")

    async def step_invite_kick_ban(self) -> None:
        self.laptop.plugin["xep_0249"].send_invitation(JID(self.erin_jid), self.room, reason="come in")
        await wait_for(lambda: str(self.room) in self.erin.invites, "erin to get carol's invitation")
        await iq_call("carol", "make erin a member",
                      self.muc(self.laptop).set_affiliation(self.room, "member", jid=JID(self.erin_jid), timeout=STEP_TIMEOUT))
        await self.join(self.erin, "erin")
        await iq_call("carol", "kick erin", self.muc(self.laptop).set_role(self.room, "erin", "none", timeout=STEP_TIMEOUT))
        await wait_for(lambda: any(p["type"] == "unavailable" and 307 in p["codes"] for p in self.erin.room_presence),
                       "erin to learn she was kicked (307)")
        await iq_call("carol", "ban erin",
                      self.muc(self.laptop).set_affiliation(self.room, "outcast", jid=JID(self.erin_jid), timeout=STEP_TIMEOUT))
        await self.refused_join(self.erin, "erin", "forbidden")

    async def step_bookmarks(self) -> None:
        laptop, phone = self.laptop, self.phone
        node = "urn:xmpp:bookmarks:1"
        conference = Conference()
        conference["name"] = "Interop room"
        conference["autojoin"] = True
        conference["nick"] = "carol"
        options = laptop.plugin["xep_0004"].make_form(ftype="submit")
        options.add_field(var="FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#publish-options")
        options.add_field(var="pubsub#persist_items", value="true")
        options.add_field(var="pubsub#max_items", value="max")
        options.add_field(var="pubsub#access_model", value="whitelist")
        await iq_call("carol/laptop", "XEP-0402 publish",
                      laptop.plugin["xep_0060"].publish(JID(self.carol_jid), node, id=str(self.room), payload=conference,
                                                        options=options, timeout=STEP_TIMEOUT))
        iq = await iq_call("carol/phone", "XEP-0048 get_bookmarks",
                           phone.plugin["xep_0048"].get_bookmarks(timeout=STEP_TIMEOUT))
        confs = {str(c["jid"]): c for c in iq["private"]["bookmarks"]["conferences"]}
        check(str(self.room) in confs, f"carol/phone: XEP-0048 bookmarks {list(confs)} lack {self.room}")
        check(confs[str(self.room)]["autojoin"] and confs[str(self.room)]["nick"] == "carol",
              f"carol/phone: the bookmark reads as {confs[str(self.room)]}")
        other = f"elsewhere-{secrets.token_hex(2)}@conference.{self.args.domain}"
        legacy = LegacyBookmarks()
        legacy.add_conference(other, "carol", name="Elsewhere", autojoin=False)
        await iq_call("carol/phone", "XEP-0048 set_bookmarks",
                      phone.plugin["xep_0048"].set_bookmarks(legacy, timeout=STEP_TIMEOUT))
        items = await iq_call("carol/laptop", "XEP-0402 items",
                              laptop.plugin["xep_0060"].get_items(JID(self.carol_jid), node, timeout=STEP_TIMEOUT))
        ids = sorted(i["id"] for i in items["pubsub"]["items"])
        check(ids == [other], f"carol/laptop: the bookmarks node holds {ids}, want [{other}]")

    async def step_leave(self) -> None:
        self.muc(self.dave).leave_muc(self.room, "dave")
        await wait_for(lambda: "dave" not in self.muc(self.laptop).get_roster(self.room), "carol to see dave leave")
        for c in self.clients:
            before = c.disconnects
            await c.disconnect(wait=5)
            await wait_for(lambda c=c: c.disconnects > before, f"{c.label} to be disconnected")

    async def run(self) -> bool:
        required = [
            ("carol (2 devices), dave and erin log in", self.step_login),
            ("carol creates and configures a members-only persistent room", self.step_create),
            ("dave joins as a member; erin is refused with registration-required", self.step_members),
        ]
        independent = [
            ("groupchat with stanza-ids; carol's second device shares her nick", self.step_talk),
            ("private messages through the room and a subject change", self.step_private_and_subject),
            ("XEP-0410 self-ping", self.step_self_ping),
            ("XEP-0313 on the room archive, RSM pages of 2", self.step_archive),
            ("XEP-0249 invitation; kick (307), ban and a refused join", self.step_invite_kick_ban),
            ("XEP-0402 bookmarks seen and stored through XEP-0048 (#compat)", self.step_bookmarks),
        ]
        broken = False
        for name, step in required:
            if broken:
                self.results.append((name, "skipped", "an earlier step failed"))
                continue
            broken = not await run_step(self.results, self.clients, name, step, 3 * STEP_TIMEOUT)
        for name, step in independent:
            if broken:
                self.results.append((name, "skipped", "an earlier step failed"))
                continue
            await run_step(self.results, self.clients, name, step, 3 * STEP_TIMEOUT)
        await run_step(self.results, self.clients, "dave leaves; every stream closes", self.step_leave, 3 * STEP_TIMEOUT)
        errors = [f"{c.label}: {e}" for c in self.clients for e in c.handler_errors]
        self.results.append(("no exceptions in slixmpp handlers", "failed" if errors else "passed", "\n".join(errors)))
        return all(status != "failed" for _, status, _ in self.results)


def main() -> int:
    args = parse_args(__doc__.splitlines()[0], ["carol", "dave", "erin"])
    return asyncio.run(run_suite(Suite(args), OVERALL_TIMEOUT, "slixmpp group chat interop summary", "interop-muc"))


if __name__ == "__main__":
    sys.exit(main())
