#!/usr/bin/env python3
"""Federation suite: users of Jabberwock and of a real Prosody, each on their own server.

Started by tests/interop/federation/run.sh, which runs Jabberwock for jabberwock.test and
Prosody for prosody.test (certificates from a CA both trust: SASL EXTERNAL) and
insecure.test (a self-signed certificate: dialback). Every client is slixmpp.

Phase "federate" (both servers fresh):
  1. alice (Jabberwock), charles (prosody.test) and dave (insecure.test) log in
  2. alice and charles subscribe to each other across servers; both rosters say "both"
  3. the same between alice and dave
  4. everyone sees the others' presence
  5. chat messages both ways with each
  6. group chat across servers: charles (Prosody) enters alice's room on
     conference.jabberwock.test, alice enters charles's room on Prosody's muc component
     (rooms.prosody.test), and groupchat messages flow both ways in each
  7. Prosody stops mid-conversation: alice sees charles go, and her next message
     bounces with remote-server-not-found or remote-server-timeout
  8. Prosody comes back: charles logs in again, and messages flow both ways again
Phase "after-restart" (run.sh restarted Jabberwock in between):
  9. charles logs in, then alice: her server probes prosody.test and she sees charles;
     charles sees her; her roster still has charles and dave with "both"
 10. chat both ways after the restart
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import subprocess
import sys

from harness import Failure, abort_all, check, report, run_step, say, wait_for
from slixmpp import JID
from slixmpp.exceptions import PresenceError
from slixmpp_suite import Client

OVERALL_TIMEOUT = 150.0
BOUNCE_CONDITIONS = {"remote-server-not-found", "remote-server-timeout"}


class Federation:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.alice_jid = f"alice@{args.jw_domain}"
        self.charles_jid = f"charles@{args.prosody_domain}"
        self.dave_jid = f"dave@{args.insecure_domain}"
        self.clients: list[Client] = []
        self.results: list[tuple[str, str, str]] = []

    # -- helpers -----------------------------------------------------------------------

    async def login(self, label: str, jid: str, password: str, host: str, port: int) -> Client:
        c = Client(label, jid, password, mech="SCRAM-SHA-1")
        c.register_plugin("xep_0045")
        c.groupchat = []
        c.add_event_handler("groupchat_message", lambda m, c=c: c.groupchat.append((str(m["from"]), m["body"])))
        self.clients.append(c)
        c.enable_plaintext = False
        c.enable_direct_tls = False
        c.connect(host, port)
        await wait_for(lambda: c.session_started or c.failed_auth or c.stream_errors,
                       f"{label}'s session to start ({host}:{port})")
        check(c.session_started, f"{label}: login failed: auth={c.failed_auth} stream={c.stream_errors}")
        c.send_presence()
        await c.fetch_roster()
        say(f"  {label}: session {c.boundjid.full}")
        return c

    async def jw(self, label: str, jid: str, password: str) -> Client:
        return await self.login(label, jid, password, self.args.jw_host, self.args.jw_port)

    async def prosody(self, label: str, jid: str, password: str) -> Client:
        return await self.login(label, jid, password, self.args.prosody_host, self.args.prosody_port)

    async def befriend(self, a: Client, b: Client) -> None:
        """a and b, on different servers, subscribe to each other and approve."""
        for x, y in ((a, b), (b, a)):
            x.send_presence(pto=y.boundjid.bare, ptype="subscribe")
            await wait_for(lambda: x.boundjid.bare in y.subscribe_requests,
                           f"{y.label} to get {x.label}'s subscription request")
            y.send_presence(pto=x.boundjid.bare, ptype="subscribed")
        for x, y in ((a, b), (b, a)):
            await wait_for(lambda: self.subscription(x, y.boundjid.bare) == "both",
                           f"{x.label}'s roster to say 'both' for {y.label}", timeout=15)

    @staticmethod
    def subscription(c: Client, bare: str) -> str | None:
        items = [p for p in c.roster_pushes if bare in p]
        return items[-1][bare].get("subscription") if items else None

    async def sees_available(self, watcher: Client, other: Client) -> None:
        await wait_for(lambda: watcher.presence_of(other.boundjid.full) == "available",
                       f"{watcher.label} to see {other.label} available", timeout=15)

    async def chat(self, a: Client, b: Client, text: str) -> None:
        """One message each way between a and b."""
        for x, y, body in ((a, b, f"{text}: {a.label} to {b.label}"), (b, a, f"{text}: {b.label} to {a.label}")):
            x.send_message(mto=y.boundjid.full, mbody=body, mtype="chat")
            await wait_for(lambda: body in y.bodies_from(x.boundjid.bare), f"{y.label} to get {body!r}", timeout=15)
            got = [m for m in y.messages if m["body"] == body][0]
            check(got["from"].full == x.boundjid.full, f"{body!r} came from {got['from']}, not {x.boundjid.full}")

    async def room_talk(self, room: JID, owner: Client, guest: Client) -> None:
        """`owner` creates `room` (an instant room) and `guest`, of the other server,
        enters it; one groupchat message each way."""
        muc = owner.plugin["xep_0045"]
        try:
            pres, *_ = await muc.join_muc_wait(room, owner.label, timeout=15)
            if 201 in pres["muc"]["status_codes"]:
                await muc.set_room_config(room, owner.plugin["xep_0004"].make_form(ftype="submit"), timeout=15)
            await guest.plugin["xep_0045"].join_muc_wait(room, guest.label, timeout=15)
        except PresenceError as e:
            raise Failure(f"joining {room}: {e.presence['error']['condition']} {e.presence['error']['text']!r}") from None
        except asyncio.TimeoutError:
            raise Failure(f"joining {room} timed out") from None
        for x, y in ((guest, owner), (owner, guest)):
            body = f"in {room.bare}: {x.label} to everyone"
            x.send_message(mto=room, mbody=body, mtype="groupchat")
            await wait_for(lambda: (f"{room.bare}/{x.label}", body) in y.groupchat,
                           f"{y.label} to get {x.label}'s groupchat message in {room.bare}", timeout=15)

    def prosody_ctl(self, action: str) -> None:
        say(f"  prosody {action}")
        subprocess.run([self.args.prosody_ctl, action], check=True)

    # -- phase "federate" --------------------------------------------------------------

    async def federate(self) -> None:
        a = self.args
        steps = []

        async def logins():
            self.alice = await self.jw("alice", self.alice_jid, a.alice_password)
            self.charles = await self.prosody("charles", self.charles_jid, a.charles_password)
            self.dave = await self.prosody("dave", self.dave_jid, a.dave_password)
        steps.append(("alice, charles and dave log in on their own servers", logins))
        steps.append(("alice and charles (SASL EXTERNAL domain) subscribe to each other",
                      lambda: self.befriend(self.alice, self.charles)))
        steps.append(("alice and dave (dialback domain) subscribe to each other",
                      lambda: self.befriend(self.alice, self.dave)))

        async def presence():
            for x, y in ((self.alice, self.charles), (self.charles, self.alice), (self.alice, self.dave), (self.dave, self.alice)):
                await self.sees_available(x, y)
        steps.append(("everyone sees the others available across servers", presence))

        async def chat():
            await self.chat(self.alice, self.charles, "hello")
            await self.chat(self.alice, self.dave, "hello")
        steps.append(("chat both ways with each remote user", chat))

        async def rooms():
            await self.room_talk(JID(f"fed@conference.{a.jw_domain}"), self.alice, self.charles)
            await self.room_talk(JID(f"fed@rooms.{a.prosody_domain}"), self.charles, self.alice)
        steps.append(("group chat across servers: a Prosody user in our room, ours in Prosody's", rooms))

        async def prosody_down():
            self.prosody_ctl("stop")
            await wait_for(lambda: self.alice.presence_of(self.charles.boundjid.full) == "unavailable",
                           "alice to see charles unavailable when Prosody stops", timeout=15)
            before = len(self.alice.message_errors)
            self.alice.send_message(mto=self.charles_jid, mbody="are you there?", mtype="chat")
            await wait_for(lambda: len(self.alice.message_errors) > before,
                           "the message to a stopped Prosody to bounce", timeout=30)
            bounce = self.alice.message_errors[-1]
            check(any(c in bounce for c in BOUNCE_CONDITIONS), f"unexpected bounce: {bounce}")
            say(f"  bounce: {bounce}")
        steps.append(("Prosody stops: alice sees charles go and her message bounces", prosody_down))

        async def prosody_back():
            self.prosody_ctl("start")
            for c in (self.charles, self.dave):
                c.abort()
            self.charles = await self.prosody("charles again", self.charles_jid, a.charles_password)
            await self.sees_available(self.alice, self.charles)
            # The server retries the domain after a backoff; until then messages bounce.
            for attempt in range(30):
                body = f"welcome back {attempt}"
                self.alice.send_message(mto=self.charles.boundjid.full, mbody=body, mtype="chat")
                try:
                    await wait_for(lambda: body in self.charles.bodies_from(self.alice_jid), "delivery", timeout=2)
                    break
                except Failure:
                    continue
            else:
                raise Failure("messages to charles never got through after Prosody came back")
            await self.chat(self.alice, self.charles, "after Prosody restarted")
        steps.append(("Prosody returns: charles logs in again and messages flow", prosody_back))
        await self.run_chained(steps)

    # -- phase "after-restart" ---------------------------------------------------------

    async def after_restart(self) -> None:
        a = self.args
        steps = []

        async def probes():
            self.charles = await self.prosody("charles", self.charles_jid, a.charles_password)
            self.alice = await self.jw("alice", self.alice_jid, a.alice_password)
            await self.sees_available(self.alice, self.charles)
            await self.sees_available(self.charles, self.alice)
            roster = await self.alice.fetch_roster()
            for bare in (self.charles_jid, self.dave_jid):
                check(roster.get(bare, {}).get("subscription") == "both",
                      f"alice's roster after the restart: {bare} is {roster.get(bare)}")
        steps.append(("after Jabberwock restarts, alice's roster holds and presence is probed", probes))
        steps.append(("chat both ways after the restart",
                      lambda: self.chat(self.alice, self.charles, "after Jabberwock restarted")))
        await self.run_chained(steps)

    # -- driver ------------------------------------------------------------------------

    async def run_chained(self, steps) -> None:
        """Runs the steps in order; after a failure the rest are skipped."""
        broken = False
        for name, step in steps:
            if broken:
                self.results.append((name, "skipped", "an earlier step failed"))
                continue
            broken = not await run_step(self.results, self.clients, name, step)


async def main_async(args: argparse.Namespace) -> int:
    suite = Federation(args)
    phase = suite.federate if args.phase == "federate" else suite.after_restart
    try:
        await asyncio.wait_for(phase(), OVERALL_TIMEOUT)
    except asyncio.TimeoutError:
        suite.results.append((f"phase {args.phase} within {OVERALL_TIMEOUT:.0f} s", "failed", "overall timeout"))
    finally:
        abort_all(suite.clients)
    report(suite.results, f"federation with Prosody, phase {args.phase}", "federation")
    return 0 if all(status == "passed" for _, status, _ in suite.results) else 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--phase", choices=["federate", "after-restart"], required=True)
    p.add_argument("--jw-host", required=True)
    p.add_argument("--jw-port", type=int, required=True)
    p.add_argument("--jw-domain", required=True)
    p.add_argument("--prosody-host", required=True)
    p.add_argument("--prosody-port", type=int, required=True)
    p.add_argument("--prosody-domain", required=True)
    p.add_argument("--insecure-domain", required=True)
    p.add_argument("--prosody-ctl", required=True, help="a command taking 'stop' or 'start'")
    p.add_argument("--alice-password", required=True)
    p.add_argument("--charles-password", required=True)
    p.add_argument("--dave-password", required=True)
    p.add_argument("--debug", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.ERROR,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr)
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
