#!/usr/bin/env python3
"""Interop suite for service administration: slixmpp's xep_0050 and xep_0133 plugins
against a real server.

Started by tests/interop/run.sh, which lists carol in `admins` and passes the passwords
of carol (an admin) and dave (not one). The scenario:

  1. carol and dave log in and send presence
  2. dave sees no command in the server's commands node, and running one is forbidden
  3. carol sees the XEP-0133 commands, adds frank, and frank logs in with his password
  4. the online users (number and list) include carol, dave and frank
  5. an announcement reaches dave as a headline from the domain
  6. changing frank's password ends his session; the new password works
  7. ending frank's session ends it
  8. deleting frank: he can no longer log in
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import secrets
import ssl
import sys
from typing import Any

from harness import STEP_TIMEOUT, check, iq_call, parse_args, run_step, run_suite, wait_for
from slixmpp import ClientXMPP

OVERALL_TIMEOUT = 70.0
COMMANDS = "http://jabber.org/protocol/commands"
ADMIN = "http://jabber.org/protocol/admin"


class Client(ClientXMPP):
    def __init__(self, label: str, jid: str, password: str) -> None:
        super().__init__(jid, password)
        self.label = label
        for plugin in ("xep_0030", "xep_0004", "xep_0050", "xep_0133"):
            self.register_plugin(plugin)
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.enable_plaintext = False
        self.enable_direct_tls = False
        self.session_started = False
        self.failed_auth = False
        self.stream_errors: list[str] = []
        self.disconnects = 0
        self.messages: list[Any] = []
        self.trace: collections.deque[str] = collections.deque(maxlen=30)
        on = self.add_event_handler
        on("session_start", self._started)
        on("failed_all_auth", lambda _e: setattr(self, "failed_auth", True))
        on("stream_error", lambda e: self.stream_errors.append(str(e["condition"])))
        on("disconnected", lambda _r: setattr(self, "disconnects", self.disconnects + 1))
        on("message", self.messages.append)
        self.add_filter("in", self._trace_in)

    def _started(self, _event) -> None:
        self.session_started = True
        self.send_presence()

    def _trace_in(self, stanza):
        self.trace.append(f"<- {stanza}"[:300])
        return stanza

    def describe(self) -> str:
        head = f"--- {self.label} --- started={self.session_started} errors={self.stream_errors}"
        return "\n".join([head] + ["  " + t for t in self.trace])

    async def run_command(self, name: str, values: dict[str, Any] | None = None):
        """Runs XEP-0133 command `name` through xep_0133/xep_0050, filling its form with
        `values`; returns the final iq (result or error)."""
        done = asyncio.get_running_loop().create_future()

        def finish(iq, _session) -> None:
            if not done.done():
                done.set_result(iq)

        def fill(iq, session) -> None:
            if iq["command"]["status"] == "completed":
                return finish(iq, session)
            fields = iq["command"]["form"].get_fields()
            answer = self.plugin["xep_0004"].make_form(ftype="submit")
            for var, field in fields.items():
                if field["type"] == "hidden":
                    answer.add_field(var=var, ftype="hidden", value=field["value"])
            for var, value in (values or {}).items():
                answer.add_field(var=var, ftype=fields[var]["type"], value=value)
            session["payload"] = answer
            session["next"] = finish
            self.plugin["xep_0050"].complete_command(session)

        getattr(self.plugin["xep_0133"], name.replace("-", "_"))(session={"next": fill, "error": finish})
        return await asyncio.wait_for(done, STEP_TIMEOUT)


class Suite:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.domain = args.domain
        self.clients: list[Client] = []
        self.results: list[tuple[str, str, str]] = []
        self.frank_password = secrets.token_hex(8)

    async def login(self, label: str, user: str, password: str, resource: str = "desk") -> Client:
        c = Client(label, f"{user}@{self.domain}/{resource}", password)
        self.clients.append(c)
        c.connect(self.args.host, self.args.port)
        await wait_for(lambda: c.session_started or c.failed_auth or c.stream_errors, f"{label}'s login")
        return c

    async def step_login(self) -> None:
        self.carol = await self.login("carol", "carol", self.args.carol_password)
        self.dave = await self.login("dave", "dave", self.args.dave_password)
        check(self.carol.session_started and self.dave.session_started, "carol or dave could not log in")

    async def step_not_admin(self) -> None:
        items = await iq_call("dave", "disco#items of the commands node",
                              self.dave.plugin["xep_0030"].get_items(jid=self.domain, node=COMMANDS, timeout=STEP_TIMEOUT))
        check(not items["disco_items"]["items"], f"dave sees commands: {items}")
        reply = await self.dave.run_command("add-user", {"accountjid": f"mallory@{self.domain}",
                                                         "password": "x", "password-verify": "x"})
        check(reply["type"] == "error" and reply["error"]["condition"] == "forbidden", f"dave ran add-user: {reply}")

    async def step_add_user(self) -> None:
        items = await iq_call("carol", "disco#items of the commands node",
                              self.carol.plugin["xep_0030"].get_items(jid=self.domain, node=COMMANDS, timeout=STEP_TIMEOUT))
        nodes = {item[1] for item in items["disco_items"]["items"]}
        for name in ("add-user", "delete-user", "change-user-password", "end-user-session",
                     "get-online-users-num", "get-online-users-list", "announce"):
            check(f"{ADMIN}#{name}" in nodes, f"{name} is not listed: {sorted(nodes)}")
        reply = await self.carol.run_command("add-user", {"accountjid": f"frank@{self.domain}",
                                                          "password": self.frank_password,
                                                          "password-verify": self.frank_password})
        check(reply["type"] == "result" and reply["command"]["status"] == "completed", f"add-user: {reply}")
        self.frank = await self.login("frank", "frank", self.frank_password)
        check(self.frank.session_started, "frank could not log in with the password the admin set")

    async def step_online(self) -> None:
        await asyncio.sleep(0.2)  # frank's initial presence
        reply = await self.carol.run_command("get-online-users-list")
        online = set(reply["command"]["form"]["values"].get("onlineuserjids", []))
        for user in ("carol", "dave", "frank"):
            check(f"{user}@{self.domain}" in {str(j) for j in online}, f"{user} is not listed online: {online}")
        reply = await self.carol.run_command("get-online-users-num")
        count = int(reply["command"]["form"]["values"]["onlineusersnum"])
        check(count == len(online), f"{count} online, but the list has {len(online)}")

    async def step_announce(self) -> None:
        reply = await self.carol.run_command("announce", {"subject": "Maintenance",
                                                          "announcement": "The server restarts at noon."})
        check(reply["command"]["status"] == "completed", f"announce: {reply}")
        msg = await wait_for(lambda: next((m for m in self.dave.messages if m["type"] == "headline"), None),
                             "the announcement at dave")
        check(str(msg["from"]) == self.domain, f"the announcement came from {msg['from']}")
        check(msg["subject"] == "Maintenance" and msg["body"] == "The server restarts at noon.", f"announcement: {msg}")

    async def step_change_password(self) -> None:
        new_password = secrets.token_hex(8)
        reply = await self.carol.run_command("change-user-password", {"accountjid": f"frank@{self.domain}",
                                                                      "password": new_password})
        check(reply["command"]["status"] == "completed", f"change-user-password: {reply}")
        await wait_for(lambda: self.frank.disconnects, "frank's old session to end")
        self.frank.abort()
        self.frank = await self.login("frank", "frank", new_password, "laptop")
        check(self.frank.session_started, "frank could not log in with his new password")

    async def step_end_session(self) -> None:
        reply = await self.carol.run_command("end-user-session", {"accountjids": [f"frank@{self.domain}/laptop"]})
        check(reply["command"]["status"] == "completed", f"end-user-session: {reply}")
        await wait_for(lambda: self.frank.disconnects, "frank's session to end")
        self.frank.abort()

    async def step_delete(self) -> None:
        reply = await self.carol.run_command("delete-user", {"accountjids": [f"frank@{self.domain}"]})
        check(reply["command"]["status"] == "completed", f"delete-user: {reply}")
        gone = await self.login("frank (deleted)", "frank", self.frank_password)
        check(gone.failed_auth and not gone.session_started, "a deleted account could still log in")
        gone.abort()

    async def run(self) -> bool:
        steps = [
            ("carol (admin) and dave log in", self.step_login),
            ("dave is not an admin: no commands listed, add-user forbidden", self.step_not_admin),
            ("XEP-0133 add-user: the commands are listed, frank is created and logs in", self.step_add_user),
            ("get-online-users-list and -num", self.step_online),
            ("announce: a headline from the domain reaches dave", self.step_announce),
            ("change-user-password ends frank's session; the new password works", self.step_change_password),
            ("end-user-session ends frank's session", self.step_end_session),
            ("delete-user: frank can no longer log in", self.step_delete),
        ]
        broken = False
        for name, step in steps:
            if broken:
                self.results.append((name, "skipped", "an earlier step failed"))
                continue
            broken = not await run_step(self.results, self.clients, name, step, 3 * STEP_TIMEOUT)
        return all(status != "failed" for _, status, _ in self.results)


def main() -> int:
    args = parse_args(__doc__.splitlines()[0], ["carol", "dave"])
    return asyncio.run(run_suite(Suite(args), OVERALL_TIMEOUT, "slixmpp admin suite", "admin"))


if __name__ == "__main__":
    sys.exit(main())
