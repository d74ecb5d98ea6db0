#!/usr/bin/env python3
"""Federation with a real ejabberd: users of Jabberwock and of ejabberd, each on their own
server, with slixmpp clients.

Started by tests/interop/federation/run_ejabberd.sh, which runs Jabberwock for
jabberwock.test and ejabberd for ejabberd.test (certificates from a CA both trust), with
ejabberd's mod_muc on rooms.ejabberd.test:
  1. alice (Jabberwock) and erin (ejabberd) log in
  2. they subscribe to each other across servers; both rosters say "both"
  3. each sees the other available
  4. chat messages both ways
  5. group chat across servers: erin enters a room on conference.jabberwock.test, alice
     enters a room on ejabberd's mod_muc, and groupchat messages flow both ways in each
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from federation_suite import Federation
from harness import run_suite
from slixmpp import JID


class EjabberdFederation(Federation):
    """The Prosody suite's steps that do not stop the peer, against ejabberd."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.alice_jid = f"alice@{args.jw_domain}"
        self.erin_jid = f"erin@{args.ejabberd_domain}"
        self.clients = []
        self.results = []

    async def run(self) -> bool:
        a = self.args
        steps = []

        async def logins():
            self.alice = await self.login("alice", self.alice_jid, a.alice_password, a.jw_host, a.jw_port)
            self.erin = await self.login("erin", self.erin_jid, a.erin_password, a.ejabberd_host, a.ejabberd_port)
        steps.append(("alice (Jabberwock) and erin (ejabberd) log in on their own servers", logins))
        steps.append(("alice and erin subscribe to each other", lambda: self.befriend(self.alice, self.erin)))

        async def presence():
            await self.sees_available(self.alice, self.erin)
            await self.sees_available(self.erin, self.alice)
        steps.append(("each sees the other available across servers", presence))
        steps.append(("chat both ways", lambda: self.chat(self.alice, self.erin, "hello")))

        async def rooms():
            await self.room_talk(JID(f"fed@conference.{a.jw_domain}"), self.alice, self.erin)
            await self.room_talk(JID(f"fed@rooms.{a.ejabberd_domain}"), self.erin, self.alice)
        steps.append(("group chat across servers: an ejabberd user in our room, ours in ejabberd's", rooms))
        await self.run_chained(steps)
        return all(status != "failed" for _, status, _ in self.results)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jw-host", required=True)
    p.add_argument("--jw-port", type=int, required=True)
    p.add_argument("--jw-domain", required=True)
    p.add_argument("--ejabberd-host", required=True)
    p.add_argument("--ejabberd-port", type=int, required=True)
    p.add_argument("--ejabberd-domain", required=True)
    p.add_argument("--alice-password", required=True)
    p.add_argument("--erin-password", required=True)
    p.add_argument("--debug", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.ERROR,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr)
    return asyncio.run(run_suite(EjabberdFederation(args), 120.0, "federation with ejabberd", "federation-ejabberd"))


if __name__ == "__main__":
    sys.exit(main())
