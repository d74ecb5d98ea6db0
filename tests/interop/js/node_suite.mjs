// Interop suite in Node: unmodified third-party JavaScript XMPP clients against a real server.
//
// Started by run.sh, which runs the server with fresh data and free loopback ports, creates
// the accounts with the admin CLI and passes everything in environment variables. Scenario:
//
//   1. carol (slixmpp, tcp_peer.py) logs in over STARTTLS on the c2s port and echoes chats
//   2. alice (@xmpp/client) logs in over WebSocket and sends initial presence
//   3. bob (strophe.js) logs in over BOSH and sends initial presence
//   4. alice -> bob and bob -> alice chat messages arrive with the right body and from
//   5. alice (WebSocket) and bob (BOSH) each message carol (TCP) and get carol's echo back
//   6. carol saw exactly those two messages and exited cleanly
//   7. a message that reaches bob's BOSH session while he holds no request comes with his
//      next request, not when that request's wait runs out (XEP-0124 §10)
//   8. alice and bob log out
//
// Exit status 0 only if every step passed; the last line says how many did.

import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

import { Strophe, $msg, $pres } from 'strophe.js';

import { Failure, Inbox, check, debugEnabled, env, runSteps, say, sleep, within } from './lib/harness.mjs';
import { closeXMLHttpRequestAgents, installXMLHttpRequest } from './lib/xhr.mjs';
import { XmppJsClient } from './lib/xmppjs.mjs';

installXMLHttpRequest();
// strophe.js logs at DEBUG level by default; its wire traffic is shown with INTEROP_DEBUG.
Strophe.setLogLevel(debugEnabled() ? Strophe.LogLevel.DEBUG : Strophe.LogLevel.WARN);

const DOMAIN = env('XMPP_DOMAIN');
const HOST = env('JW_HOST');
const HTTP_PORT = env('JW_HTTP_PORT');
const C2S_PORT = env('JW_C2S_PORT');
const PYTHON = env('INTEROP_PYTHON');
const ALICE = env('ALICE_JID');
const BOB = env('BOB_JID');
const CAROL = env('CAROL_JID');
const WS_URL = `ws://${HOST}:${HTTP_PORT}/xmpp-websocket`;
const BOSH_URL = `http://${HOST}:${HTTP_PORT}/http-bind`;
const RUN = Math.random().toString(36).slice(2, 8); // makes every body unique to this run

const bare = (jid) => String(jid).split('/')[0];

// -- carol: slixmpp over TCP in a child process -------------------------------------------

class TcpPeer {
    constructor() {
        this.got = [];
        this.stderr = '';
        this.jid = null;
        this.exit = null;
    }

    start() {
        const script = new URL('./tcp_peer.py', import.meta.url).pathname;
        const args = [script, '--host', HOST, '--port', C2S_PORT, '--jid', `${CAROL}/tcp-peer`,
            '--password', env('CAROL_PASSWORD'), '--count', '2', '--timeout', '50'];
        if (debugEnabled()) args.push('--debug');
        this.proc = spawn(PYTHON, args, { stdio: ['ignore', 'pipe', 'pipe'] });
        this.exited = new Promise((resolve) => {
            this.proc.on('exit', (code, signal) => {
                this.exit = { code, signal };
                resolve(this.exit);
            });
        });
        this.proc.stderr.on('data', (d) => {
            this.stderr += d;
            if (debugEnabled()) process.stderr.write(d);
        });
        const ready = new Promise((resolve) => {
            createInterface({ input: this.proc.stdout }).on('line', (line) => {
                if (line.startsWith('READY ')) {
                    this.jid = line.slice(6).trim();
                    resolve();
                } else if (line.startsWith('GOT ')) {
                    const rest = line.slice(4);
                    const sp = rest.indexOf(' ');
                    this.got.push({ from: rest.slice(0, sp), body: rest.slice(sp + 1) });
                }
            });
        });
        const died = this.exited.then(({ code, signal }) => {
            throw new Failure(`carol (slixmpp over STARTTLS, port ${C2S_PORT}) exited (${code ?? signal}) before her session started:\n${this.stderr.trim()}`);
        });
        return within(20000, 'carol (slixmpp over STARTTLS) to start her session', Promise.race([ready, died]))
            .catch((e) => {
                if (!this.stderr) throw e;
                throw new Failure(`${e.message}\ncarol's stderr:\n${this.stderr.trim()}`);
            });
    }

    stop() {
        if (this.proc && this.exit === null) this.proc.kill('SIGTERM');
    }
}

// -- bob: strophe.js over BOSH ------------------------------------------------------------

class StropheClient {
    constructor(label, { service, jid, password, resource }) {
        this.label = label;
        this.service = service;
        this.login = `${jid}/${resource}`;
        this.password = password;
        this.messages = new Inbox(label);
        this.statuses = [];
        this.conn = new Strophe.Connection(service);
        this.trace = []; // the last BOSH bodies either way, shown when logging in fails
        const record = (dir) => (d) => {
            this.trace.push(`${dir} ${d}`);
            if (this.trace.length > 30) this.trace.shift();
            if (debugEnabled()) say(`${label} ${dir} ${d}`);
        };
        this.conn.rawInput = record('RECV');
        this.conn.rawOutput = record('SEND');
    }

    start() {
        const names = Object.fromEntries(Object.entries(Strophe.Status).map(([k, v]) => [v, k]));
        const connected = new Promise((resolve, reject) => {
            this.conn.connect(this.login, this.password, (status, condition) => {
                this.statuses.push(condition ? `${names[status]}(${condition})` : names[status]);
                if (status === Strophe.Status.CONNECTED) resolve();
                else if ([Strophe.Status.AUTHFAIL, Strophe.Status.CONNFAIL, Strophe.Status.ERROR,
                    Strophe.Status.DISCONNECTED, Strophe.Status.CONNTIMEOUT].includes(status)) {
                    reject(new Failure(`${this.label} could not log in over BOSH at ${this.service}: status `
                        + `${this.statuses.join(' -> ')}; the exchange:\n${this.trace.map((l) => `    ${l}`).join('\n')}`));
                }
            });
        });
        this.conn.addHandler((st) => {
            const body = st.getElementsByTagName('body')[0];
            if (body) {
                this.messages.push({ from: st.getAttribute('from'), to: st.getAttribute('to'),
                    type: st.getAttribute('type'), body: Strophe.getText(body) });
            }
            return true;
        }, null, 'message');
        return within(15000, `${this.label} to log in over BOSH`, connected).then(() => {
            this.jid = this.conn.jid;
            this.conn.send($pres());
            return this.jid;
        });
    }

    sendChat(to, body) {
        this.conn.send($msg({ to, type: 'chat' }).c('body').t(body));
    }

    stop() {
        if (!this.conn.connected) return Promise.resolve();
        return new Promise((resolve) => {
            const prev = this.conn.connect_callback;
            this.conn.connect_callback = (status, cond) => {
                prev?.(status, cond);
                if (status === Strophe.Status.DISCONNECTED) resolve();
            };
            this.conn.send($pres({ type: 'unavailable' }));
            this.conn.disconnect('end of test');
        });
    }
}

// -- the scenario ---------------------------------------------------------------------------

const carol = new TcpPeer();
const alice = new XmppJsClient('alice (@xmpp/client, WebSocket)', {
    service: WS_URL, jid: ALICE, password: env('ALICE_PASSWORD'), resource: 'xmppjs',
});
const bob = new StropheClient('bob (strophe.js, BOSH)', {
    service: BOSH_URL, jid: BOB, password: env('BOB_PASSWORD'), resource: 'strophe',
});

function expectFrom(msg, who, fullJid) {
    check(msg.from === fullJid, `${who}'s message arrived with from='${msg.from}', expected the sender's full JID '${fullJid}'`);
}

const steps = [
    ['carol logs in over STARTTLS (slixmpp, TCP)', async () => {
        await carol.start();
        check(bare(carol.jid) === CAROL, `carol is bound to ${carol.jid}, expected ${CAROL}/…`);
        say(`  carol is ${carol.jid}`);
    }, { timeout: 25000 }],

    ['alice logs in over WebSocket and sends presence (@xmpp/client)', async () => {
        const jid = await alice.start();
        check(bare(jid) === ALICE, `alice is bound to ${jid}, expected ${ALICE}/…`);
        say(`  alice is ${jid} via ${WS_URL}`);
    }],

    ['bob logs in over BOSH and sends presence (strophe.js)', async () => {
        const jid = await bob.start();
        check(bare(jid) === BOB, `bob is bound to ${jid}, expected ${BOB}/…`);
        say(`  bob is ${jid} via ${BOSH_URL}`);
    }],

    ['alice -> bob (WebSocket to BOSH)', async () => {
        const body = `hello bob, from alice over WebSocket ${RUN}`;
        await alice.sendChat(BOB, body);
        const m = await bob.messages.next((x) => x.body === body, `"${body}" from alice`);
        expectFrom(m, 'alice', alice.jid);
        check(m.type === 'chat', `alice's message arrived with type='${m.type}', expected 'chat'`);
    }],

    ['bob -> alice (BOSH to WebSocket)', async () => {
        const body = `hello alice, from bob over BOSH ${RUN} <&> "quoted"`;
        bob.sendChat(ALICE, body);
        const m = await alice.messages.next((x) => x.body === body, `"${body}" from bob`);
        expectFrom(m, 'bob', bob.jid);
        check(m.type === 'chat', `bob's message arrived with type='${m.type}', expected 'chat'`);
    }],

    ['alice (WebSocket) -> carol (TCP) and back', async () => {
        const body = `ping carol from alice ${RUN}`;
        await alice.sendChat(CAROL, body);
        const m = await alice.messages.next((x) => x.body === `echo: ${body}`, `carol's echo of "${body}"`);
        expectFrom(m, 'carol', carol.jid);
    }],

    ['bob (BOSH) -> carol (TCP) and back', async () => {
        const body = `ping carol from bob ${RUN}`;
        bob.sendChat(CAROL, body);
        const m = await bob.messages.next((x) => x.body === `echo: ${body}`, `carol's echo of "${body}"`);
        expectFrom(m, 'carol', carol.jid);
    }],

    ['carol got exactly those messages from the right senders and exits cleanly', async () => {
        const { code, signal } = await within(10000, 'carol (tcp_peer.py) to exit', carol.exited);
        check(code === 0, `tcp_peer.py exited with ${code ?? signal}:\n${carol.stderr.trim()}`);
        const want = [
            { from: alice.jid, body: `ping carol from alice ${RUN}` },
            { from: bob.jid, body: `ping carol from bob ${RUN}` },
        ];
        check(JSON.stringify(carol.got) === JSON.stringify(want),
            `carol received ${JSON.stringify(carol.got)}, expected ${JSON.stringify(want)}`);
    }],

    // XEP-0124 §10: output that reaches the connection manager while the client holds no
    // request must answer the client's next request at once. strophe.js's pause() stops it
    // from sending requests: whatever request it still holds is answered by the first
    // message (or there was none), so the second one certainly waits at the server; after
    // resume() the next request must bring what is queued, not wait for `wait` to pass.
    ['bob (BOSH) gets messages that came while he held no request as soon as he polls again', async () => {
        const first = `first, while strophe.js is paused ${RUN}`;
        const second = `second, while strophe.js is paused ${RUN}`;
        bob.conn.pause();
        try {
            await sleep(300);
            await alice.sendChat(bob.jid, first);
            await sleep(500);
            await alice.sendChat(bob.jid, second);
            await sleep(500);
        } finally {
            bob.conn.resume();
        }
        const t0 = Date.now();
        const why = ' (the server held the new request instead of answering it with the queued stanzas)';
        await bob.messages.next((x) => x.body === first, `"${first}" within 3 s of polling again${why}`, 3000);
        await bob.messages.next((x) => x.body === second, `"${second}" within 3 s of polling again${why}`, 3000);
        say(`  delivered ${Date.now() - t0} ms after resume()`);
    }, { group: 'bosh-poll', timeout: 15000 }],

    ['alice and bob log out', async () => {
        await within(10000, 'alice to log out', alice.stop());
        await within(10000, 'bob to log out', bob.stop());
        check(alice.errors.length === 0, `alice's session had errors: ${alice.errors.join('; ')}${alice.describe()}`);
    }],
];

const status = await runSteps('node_suite', steps, {
    overallMs: 60000,
    cleanup: async () => {
        carol.stop();
        await Promise.allSettled([alice.stop(), bob.stop()].map((p) => within(3000, 'logout', p)));
        closeXMLHttpRequestAgents();
    },
});
process.exit(status);
