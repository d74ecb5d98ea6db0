#!/usr/bin/env python3
"""HTTP file upload (XEP-0363) throughput and server memory: N files of S MB uploaded at
once through slots from the server, then downloaded at once, while the server's RSS is
sampled. Run by bench/upload.sh, which starts the server; needs the interop virtualenv
(slixmpp, aiohttp: scripts/setup-test-env.sh).
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import time

import aiohttp
from slixmpp import ClientXMPP

CHUNK = 256 * 1024


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Sampler:
    """The server's peak RSS while a phase runs."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.running = pid, 0, True

    async def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_kib(self.pid))
            await asyncio.sleep(0.05)


async def body(size: int):
    chunk = b"\x5a" * CHUNK
    sent = 0
    while sent < size:
        n = min(CHUNK, size - sent)
        yield chunk[:n]
        sent += n


async def phase(pid: int, jobs) -> tuple[float, int]:
    sampler = Sampler(pid)
    task = asyncio.create_task(sampler.run())
    started = time.monotonic()
    await asyncio.gather(*jobs)
    elapsed = time.monotonic() - started
    sampler.running = False
    await task
    return elapsed, sampler.peak


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--jid", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--pid", type=int, required=True, help="the server's process id")
    p.add_argument("--files", type=int, default=10)
    p.add_argument("--size-mb", type=int, default=50)
    a = p.parse_args()
    size = a.size_mb * 1024 * 1024

    client = ClientXMPP(a.jid, a.password)
    for plugin in ("xep_0030", "xep_0363"):
        client.register_plugin(plugin)
    client.ssl_context.check_hostname = False
    client.ssl_context.verify_mode = ssl.CERT_NONE
    started = asyncio.get_running_loop().create_future()
    client.add_event_handler("session_start", lambda _e: started.set_result(True))
    client.connect(a.host, a.port)
    await asyncio.wait_for(started, 30)

    upload = client.plugin["xep_0363"]
    service = await upload.find_upload_service(timeout=10)
    slots = []
    for i in range(a.files):
        iq = await upload.request_slot(service["from"], f"bench-{i}.bin", size, "application/octet-stream", timeout=10)
        slots.append((iq["http_upload_slot"]["put"]["url"], iq["http_upload_slot"]["get"]["url"]))

    idle = rss_kib(a.pid)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async def put(url: str) -> None:
            headers = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
            async with http.put(url, data=body(size), headers=headers) as r:
                assert r.status == 201, f"PUT {r.status}"

        async def get(url: str) -> None:
            got = 0
            async with http.get(url) as r:
                assert r.status == 200, f"GET {r.status}"
                async for chunk in r.content.iter_chunked(CHUNK):
                    got += len(chunk)
            assert got == size, f"GET returned {got} bytes"

        up_secs, up_peak = await phase(a.pid, [put(u) for u, _ in slots])
        down_secs, down_peak = await phase(a.pid, [get(g) for _, g in slots])
    client.disconnect()

    total_mb = a.files * a.size_mb
    print(f"{a.files} x {a.size_mb} MB at once")
    print(f"  upload:   {total_mb / up_secs:7.1f} MB/s  server RSS {idle / 1024:.1f} -> peak {up_peak / 1024:.1f} MiB")
    print(f"  download: {total_mb / down_secs:7.1f} MB/s  server RSS peak {down_peak / 1024:.1f} MiB")


if __name__ == "__main__":
    asyncio.run(main())
