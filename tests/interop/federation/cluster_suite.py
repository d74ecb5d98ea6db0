#!/usr/bin/env python3
"""Federation from a cluster: a real Prosody and two Jabberwock nodes serving one domain.

Started by tests/interop/federation/run_cluster.sh: jabberwock.test is served by two
nodes of one cluster (PostgreSQL and Redis), and resolves to the first only; Prosody
serves insecure.test with a certificate Jabberwock does not trust, so both directions
use dialback. Each node federates on its own connection, so Prosody's requests to verify
the second node's dialback keys reach the first node, which must know the shared secret;
and Prosody's stanzas for a user of the second node arrive on the first.

  1. alice (node 1), bob (node 2) and dave (Prosody) log in
  2. bob and dave subscribe to each other: bob's node connects to Prosody itself
  3. alice and dave subscribe to each other
  4. everyone sees the others' presence
  5. chat messages both ways between dave and each of alice and bob
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from federation_suite import Federation
from harness import run_chain, run_suite, setup_logging

OVERALL_TIMEOUT = 150.0
STEP_TIMEOUT = 60.0


class ClusterFederation(Federation):
    """Federation's helpers (login, befriend, chat) with this suite's users."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.clients = []
        self.results = []

    async def run(self) -> bool:
        a = self.args
        steps = []

        async def logins():
            self.alice = await self.login("alice", f"alice@{a.jw_domain}", a.alice_password, a.node1_host, a.node1_port)
            self.bob = await self.login("bob", f"bob@{a.jw_domain}", a.bob_password, a.node2_host, a.node2_port)
            self.dave = await self.login("dave", f"dave@{a.prosody_domain}", a.dave_password, a.prosody_host, a.prosody_port)
        steps.append(("alice on node 1, bob on node 2 and dave on Prosody log in", logins))
        steps.append(("bob (node 2) and dave subscribe to each other", lambda: self.befriend(self.bob, self.dave)))
        steps.append(("alice (node 1) and dave subscribe to each other", lambda: self.befriend(self.alice, self.dave)))

        async def presence():
            for x, y in ((self.dave, self.alice), (self.dave, self.bob), (self.alice, self.dave), (self.bob, self.dave)):
                await self.sees_available(x, y)
        steps.append(("dave sees alice and bob available, and they see him", presence))

        async def chat():
            await self.chat(self.dave, self.bob, "hello node 2")
            await self.chat(self.dave, self.alice, "hello node 1")
        steps.append(("chat both ways between dave and users on each node", chat))
        return await run_chain(self.results, self.clients, steps, STEP_TIMEOUT)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jw-domain", required=True)
    for node in ("node1", "node2", "prosody"):
        p.add_argument(f"--{node}-host", required=True)
        p.add_argument(f"--{node}-port", type=int, required=True)
    p.add_argument("--prosody-domain", required=True)
    for account in ("alice", "bob", "dave"):
        p.add_argument(f"--{account}-password", required=True)
    p.add_argument("--debug", action="store_true")
    args = p.parse_args()
    setup_logging(args.debug)
    return asyncio.run(run_suite(ClusterFederation(args), OVERALL_TIMEOUT, "federation with Prosody from two cluster nodes", "federation-cluster"))


if __name__ == "__main__":
    sys.exit(main())
