// Interop suite in a browser: Converse.js, unmodified from its npm release, in Debian's
// Chromium driven by playwright-core, against a real server.
//
// Started by run.sh (see there for the environment). A small Node HTTP server on 127.0.0.1
// serves a test page and Converse's dist files; loopback origins are always allowed by the
// server for WebSocket and BOSH. dave logs in with Converse three times, each time in a fresh
// browser with a fresh profile:
//
//   websocket  -- websocket_url = ws://127.0.0.1:<http>/xmpp-websocket
//   bosh       -- bosh_service_url = http://127.0.0.1:<http>/http-bind
//   discovery  -- neither URL: Converse finds the endpoints with XEP-0156 (see below)
//
// First dave and alice (@xmpp/client over WebSocket, online throughout) become mutual
// contacts. In each run Converse must connect over the expected transport; dave clicks alice
// in Converse's contact list and types a message into the message box; alice must receive it
// from Converse's full JID; alice answers, and the answer must show up in Converse's chat.
// The websocket run then goes on: the page is reloaded with the browser's storage for it
// wiped, Converse logs in again (auto_login) and, when dave opens the chat with alice, shows
// the earlier messages from the server's archive (XEP-0313); and a second @xmpp/client
// session on dave's account writes to alice and gets alice's answer, both of which Converse
// shows through message carbons (XEP-0280, which Converse enables by default).
// A screenshot of every run is saved in artifacts/. The browser reaches only loopback
// addresses: anything else (Converse's controlbox shows sponsor logos from its website) is
// refused.
//
// Discovery: Converse always fetches https://<domain>/.well-known/host-meta, i.e.
// https://localhost/ on port 443, and only accepts wss:// and https:// endpoints from it.
// The server's HTTPS listener is on a free high port, so Chromium is started with
// --host-resolver-rules="MAP localhost:443 127.0.0.1:<https port>": the browser's own
// network stack then connects https://localhost/ (and wss://localhost/) to the server's
// real HTTPS listener. Nothing is rewritten: the fetch, its CORS check, the host-meta
// document and the links in it (built by the server from the Host header, so
// wss://localhost/xmpp-websocket) are all real. The server's certificate is the self-signed
// one it generated in its data directory; Chromium accepts that one certificate only, by
// its public-key hash (--ignore-certificate-errors-spki-list), not any certificate.

import { createHash, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { Failure, check, debugEnabled, env, runSteps, say, waitFor, within } from './lib/harness.mjs';
import { XmppJsClient } from './lib/xmppjs.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DOMAIN = env('XMPP_DOMAIN');
const HOST = env('JW_HOST');
const HTTP_PORT = env('JW_HTTP_PORT');
const HTTPS_PORT = env('JW_HTTPS_PORT');
const CERT_FILE = env('JW_CERT_FILE');
const ALICE = env('ALICE_JID');
const DAVE = env('DAVE_JID');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const ARTIFACTS = process.env.INTEROP_ARTIFACTS || path.join(HERE, 'artifacts');
const DIST = path.join(HERE, 'node_modules', 'converse.js', 'dist');
const RUN = Math.random().toString(36).slice(2, 8);
const PLUGIN = 'jabberwock-interop';

const bare = (jid) => String(jid).split('/')[0];

// -- the page server ---------------------------------------------------------------------

const TYPES = {
    '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
    '.json': 'application/json', '.map': 'application/json', '.wasm': 'application/wasm', '.svg': 'image/svg+xml',
    '.png': 'image/png', '.ico': 'image/x-icon', '.woff': 'font/woff', '.woff2': 'font/woff2', '.ttf': 'font/ttf',
    '.mp3': 'audio/mpeg', '.ogg': 'audio/ogg',
};

/** The test page: Converse's dist files, a probe plugin, and converse.initialize(settings). */
function page(name, settings) {
    const json = JSON.stringify(settings).replace(/</g, '\\u003c');
    return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Jabberwock interop: Converse.js (${name})</title>
<link rel="stylesheet" href="/dist/converse.min.css">
<script type="module" src="/dist/converse.min.js"></script>
</head><body>
<script type="module">
// A Converse plugin, through its public plugin API, that lets the test see what happened.
window.interop = { connected: false, jid: null, transport: null, service: null, messages: [], events: [], feedback: [] };
converse.plugins.add(${JSON.stringify(PLUGIN)}, {
    initialize() {
        const { api } = this._converse;
        const note = (e) => window.interop.events.push(e);
        window.interop.api = api;
        // Every change of Converse's connection feedback: Strophe's status, by name, and
        // Converse's message for the user.
        const names = Object.entries(converse.env.Strophe.Status);
        api.listen.on('connfeedback', (f) => {
            const status = f.get('connection_status');
            const name = (names.find(([, v]) => v === status) || [String(status)])[0];
            window.interop.feedback.push({ status: name, message: f.get('message') || '' });
        });
        api.listen.on('connected', () => {
            const c = api.connection.get();
            Object.assign(window.interop, {
                connected: true,
                jid: c.jid,
                transport: api.connection.isType('websocket') ? 'websocket' : api.connection.isType('bosh') ? 'bosh' : 'other',
                service: c.service,
            });
            note('connected');
        });
        api.listen.on('disconnected', () => { window.interop.connected = false; note('disconnected'); });
        api.listen.on('reconnecting', () => note('reconnecting'));
        api.listen.on('message', (data) => {
            const a = data.attrs || {};
            window.interop.messages.push({ from: a.from, body: a.body, type: a.type });
        });
    },
});
converse.initialize(Object.assign(${json}, { whitelisted_plugins: [${JSON.stringify(PLUGIN)}] }));
</script>
</body></html>
`;
}

function startPageServer(pages) {
    const server = http.createServer((req, res) => {
        const url = new URL(req.url, 'http://x');
        if (pages.has(url.pathname)) {
            res.writeHead(200, { 'content-type': TYPES['.html'], 'cache-control': 'no-store' });
            return res.end(pages.get(url.pathname));
        }
        if (url.pathname.startsWith('/dist/')) {
            const file = path.normalize(path.join(DIST, decodeURIComponent(url.pathname.slice(6))));
            if (file.startsWith(DIST + path.sep) && fs.existsSync(file) && fs.statSync(file).isFile()) {
                res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream' });
                return fs.createReadStream(file).pipe(res);
            }
        }
        res.writeHead(404, { 'content-type': 'text/plain' });
        res.end('not found');
    });
    return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve(server));
    });
}

/** base64(sha256(SubjectPublicKeyInfo)) of the server's certificate, for Chromium's SPKI list. */
function spkiHash(certFile) {
    const cert = new X509Certificate(fs.readFileSync(certFile));
    const der = cert.publicKey.export({ type: 'spki', format: 'der' });
    return createHash('sha256').update(der).digest('base64');
}

// -- one Converse run ------------------------------------------------------------------------

class ConverseRun {
    constructor(name, settings, expect) {
        this.name = name;
        this.settings = settings;
        this.expect = expect; // { transport, service }
        this.console = [];
        this.requests = [];
        this.blocked = [];
    }

    async open(pageUrl, chromiumArgs) {
        this.profile = fs.mkdtempSync(path.join(os.tmpdir(), `jabberwock-converse-${this.name}-`));
        this.context = await chromium.launchPersistentContext(this.profile, {
            executablePath: CHROMIUM,
            headless: true,
            args: chromiumArgs,
            viewport: { width: 1280, height: 800 },
            timeout: 30000,
        });
        // Only this machine's loopback is ever contacted; anything else is refused and noted.
        await this.context.route('**/*', (route) => {
            const { hostname } = new URL(route.request().url());
            if (['127.0.0.1', 'localhost', '[::1]'].includes(hostname) || route.request().url().startsWith('data:')) {
                return route.fallback();
            }
            if (!this.blocked.includes(route.request().url())) this.blocked.push(route.request().url());
            return route.abort('blockedbyclient');
        });
        this.page = this.context.pages()[0] || (await this.context.newPage());
        this.page.on('console', (m) => {
            // Converse logs each stanza as log.debug('%c%s', 'color: …', xml).
            const line = `console.${m.type()}: ${m.text().replace(/^%c%s color: \w+ /, '')}`;
            if (line.includes('ERR_BLOCKED_BY_CLIENT')) return; // Converse's sponsor logos, refused above
            this.console.push(line);
            if (debugEnabled()) say(`  [${this.name}] ${line}`);
        });
        this.page.on('pageerror', (e) => this.console.push(`pageerror: ${e.stack || e}`));
        this.page.on('requestfinished', async (r) => {
            const resp = await r.response().catch(() => null);
            this.requests.push(`${r.method()} ${r.url()} -> ${resp ? resp.status() : '?'}`);
        });
        this.page.on('requestfailed', (r) => {
            if (!this.blocked.includes(r.url())) this.requests.push(`${r.method()} ${r.url()} -> failed: ${r.failure()?.errorText}`);
        });
        this.page.on('websocket', (ws) => {
            this.requests.push(`WebSocket ${ws.url()}`);
            ws.on('socketerror', (e) => this.requests.push(`WebSocket ${ws.url()} error: ${e}`));
        });
        this.pageUrl = pageUrl;
        await this.page.goto(pageUrl, { waitUntil: 'load', timeout: 15000 });
    }

    /**
     * Reloads the page with the browser's storage for it wiped first (IndexedDB,
     * localStorage, ...), so Converse starts from nothing and logs in again (auto_login):
     * whatever it then shows of earlier chats came from the server.
     */
    async reloadFresh() {
        const origin = new URL(this.pageUrl).origin;
        await this.page.evaluate(() => { window.interop.connected = false; });
        await this.page.goto('about:blank', { waitUntil: 'load', timeout: 15000 });
        const cdp = await this.context.newCDPSession(this.page);
        await cdp.send('Storage.clearDataForOrigin', { origin, storageTypes: 'all' });
        await cdp.detach();
        this.console.push('---- page reloaded with its storage cleared ----');
        await this.page.goto(this.pageUrl, { waitUntil: 'load', timeout: 15000 });
    }

    /** Opens the chat with the roster contact called `name` by clicking it. */
    async openChat(name) {
        const contact = this.page.locator('converse-roster a.open-chat', { hasText: name }).first();
        await contact.waitFor({ state: 'visible', timeout: 10000 });
        await contact.click();
    }

    /** Waits until `body` is shown as a message in Converse's chat with `jid`. */
    async waitShown(jid, body, what, ms = 10000) {
        try {
            await this.page.locator(`converse-chat[jid="${jid}"] .chat-msg__text`, { hasText: body })
                .first().waitFor({ state: 'visible', timeout: ms });
        } catch (e) {
            const shown = await this.page.locator(`converse-chat[jid="${jid}"] .chat-msg__text`).allTextContents()
                .catch(() => []);
            throw new Failure(`${what}: "${body}" is not shown in Converse's chat with ${jid}`
                + ` (${e.message.split('\n')[0]}); the chat shows ${JSON.stringify(shown)}${this.diagnostics()}`);
        }
    }

    /** The XMPP traffic Converse logged (its debug log of each stanza), since the last reload. */
    stanzas() {
        const from = this.console.lastIndexOf('---- page reloaded with its storage cleared ----');
        return this.console.slice(from + 1).filter((l) => /^console\.debug: </.test(l)).map((l) => l.slice(15));
    }

    state() {
        return this.page.evaluate(() => {
            const { connected, jid, transport, service, messages, events } = window.interop;
            return { connected, jid, transport, service, messages, events };
        });
    }

    /** What the browser did, for failure messages. */
    diagnostics() {
        const tail = (xs, n) => xs.slice(-n).map((x) => `    ${x}`).join('\n');
        const stanzas = this.console.filter((l) => /^console\.debug: </.test(l)).map((l) => l.slice(15));
        return `\n  requests:\n${tail(this.requests, 25)}\n  XMPP traffic logged by Converse (last 12):\n${tail(stanzas, 12)}`
            + `\n  console (last 15):\n${tail(this.console, 15)}`
            + (this.blocked.length ? `\n  blocked non-loopback requests:\n${tail(this.blocked, 10)}` : '');
    }

    async waitConnected() {
        const failed = ['ERROR', 'CONNFAIL', 'AUTHFAIL', 'CONNTIMEOUT'];
        try {
            await waitFor(async () => {
                const { connected, feedback } = await this.page.evaluate(
                    () => ({ connected: window.interop.connected, feedback: window.interop.feedback }));
                const bad = !connected && feedback.find((f) => failed.includes(f.status));
                if (bad) {
                    throw new Failure(`Converse failed to connect: ${feedback.map((f) => f.status).join(' -> ')}`
                        + (bad.message ? ` ("${bad.message}")` : ''));
                }
                return connected;
            }, 'Converse to connect', 25000, 100);
        } catch (e) {
            let feedback = '';
            try {
                feedback = await this.page.evaluate(() => {
                    const el = document.querySelector('.conn-feedback, converse-login-form, .login-form');
                    return el ? el.textContent.replace(/\s+/g, ' ').trim().slice(0, 300) : '';
                });
            } catch {
                // the page is gone
            }
            throw new Failure(`${e.message}${feedback ? `; Converse shows: "${feedback}"` : ''}${this.diagnostics()}`);
        }
        this.info = await this.state();
    }

    /**
     * Opens the chat with the roster contact called `name` by clicking it in Converse's
     * contact list, types `body` into the message box and presses Enter.
     */
    async typeMessage(jid, name, body) {
        try {
            const contact = this.page.locator('converse-roster a.open-chat', { hasText: name }).first();
            await contact.waitFor({ state: 'visible', timeout: 10000 });
            await contact.click();
            const box = this.page.locator(`converse-chat[jid="${jid}"] textarea.chat-textarea`);
            await box.waitFor({ state: 'visible', timeout: 10000 });
            await box.click();
            await box.fill(body);
            await box.press('Enter');
        } catch (e) {
            throw new Failure(`could not send "${body}" from Converse's chat with ${jid}: ${e.message.split('\n')[0]}${this.diagnostics()}`);
        }
    }

    async screenshot() {
        fs.mkdirSync(ARTIFACTS, { recursive: true });
        const file = path.join(ARTIFACTS, `converse-${this.name}.png`);
        await this.page.screenshot({ path: file, fullPage: false, timeout: 10000 });
        return file;
    }

    async close() {
        if (this.page) {
            try {
                await within(5000, 'Converse to log out',
                    this.page.evaluate(() => window.interop.api && window.interop.api.user.logout()));
            } catch {
                // the browser is closed below either way
            }
        }
        if (this.context) await this.context.close().catch(() => {});
        if (this.profile) fs.rmSync(this.profile, { recursive: true, force: true });
        this.context = null;
        this.page = null;
    }
}

// -- the scenario --------------------------------------------------------------------------

const common = {
    auto_login: true,
    auto_reconnect: false,
    jid: DAVE,
    password: env('DAVE_PASSWORD'),
    i18n: 'en',
    loglevel: 'debug', // the console is kept, and shown when a step fails (or with INTEROP_DEBUG)
    allow_non_roster_messaging: true,
    play_sounds: false,
    show_desktop_notifications: false,
    // OMEMO generates its keys (WebAssembly) at every fresh login: slow on a small CI
    // machine and irrelevant to these checks.
    blacklisted_plugins: ['converse-omemo'],
};

const runs = [
    new ConverseRun('websocket', {
        ...common,
        discover_connection_methods: false,
        websocket_url: `ws://${HOST}:${HTTP_PORT}/xmpp-websocket`,
    }, { transport: 'websocket', service: `ws://${HOST}:${HTTP_PORT}/xmpp-websocket` }),
    new ConverseRun('bosh', {
        ...common,
        discover_connection_methods: false,
        bosh_service_url: `http://${HOST}:${HTTP_PORT}/http-bind`,
    }, { transport: 'bosh', service: `http://${HOST}:${HTTP_PORT}/http-bind` }),
    new ConverseRun('discovery', {
        ...common,
        discover_connection_methods: true,
    }, { transport: 'websocket', service: `wss://${DOMAIN}/xmpp-websocket` }),
];

const alice = new XmppJsClient('alice (@xmpp/client, WebSocket)', {
    service: `ws://${HOST}:${HTTP_PORT}/xmpp-websocket`, jid: ALICE, password: env('ALICE_PASSWORD'), resource: 'converse-peer',
});

let pageServer;
let pageBase;
let chromiumArgs;

const steps = [
    ['serve the test page and log alice in (@xmpp/client over WebSocket)', async () => {
        check(fs.existsSync(path.join(DIST, 'converse.min.js')), `no ${DIST}/converse.min.js: run scripts/setup-js-env.sh`);
        check(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: run scripts/setup-js-env.sh`);
        const pages = new Map(runs.map((r) => [`/${r.name}.html`, page(r.name, r.settings)]));
        pageServer = await startPageServer(pages);
        pageBase = `http://127.0.0.1:${pageServer.address().port}`;
        chromiumArgs = [
            '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
            '--disable-background-networking', '--disable-component-update', '--disable-sync',
            `--host-resolver-rules=MAP ${DOMAIN}:443 127.0.0.1:${HTTPS_PORT}`,
            `--ignore-certificate-errors-spki-list=${spkiHash(CERT_FILE)}`,
        ];
        await alice.start();
        say(`  test page at ${pageBase}, alice is ${alice.jid}`);
    }, { timeout: 20000 }],

    // dave starts the chat the way a person would: by clicking alice in Converse's contact
    // list. (Converse 14 also waits for the XEP-0191 blocklist before opening a chat with a JID
    // outside the roster, and waits forever on a server without blocking.)
    ['dave and alice become mutual contacts (roster + presence subscription, @xmpp/client)', async () => {
        const dave = new XmppJsClient('dave (roster setup, @xmpp/client)', {
            service: `ws://${HOST}:${HTTP_PORT}/xmpp-websocket`, jid: DAVE, password: env('DAVE_PASSWORD'), resource: 'roster-setup',
        });
        try {
            await dave.start();
            await dave.rosterSet(ALICE, 'Alice');
            await dave.sendPresence({ to: ALICE, type: 'subscribe' });
            await alice.presences.next((p) => bare(p.from) === DAVE && p.type === 'subscribe', "dave's subscription request");
            await alice.sendPresence({ to: DAVE, type: 'subscribed' });
            await alice.sendPresence({ to: DAVE, type: 'subscribe' });
            await dave.presences.next((p) => bare(p.from) === ALICE && p.type === 'subscribe', "alice's subscription request");
            await dave.sendPresence({ to: ALICE, type: 'subscribed' });
            const both = async (who, whom) => (await who.rosterGet()).find((i) => i.jid === whom && i.subscription === 'both');
            await waitFor(() => both(dave, ALICE), "subscription 'both' for alice in dave's roster", 10000, 200);
            await waitFor(() => both(alice, DAVE), "subscription 'both' for dave in alice's roster", 10000, 200);
        } catch (e) {
            throw new Failure(`${e.message}${alice.describe()}${dave.describe()}`);
        } finally {
            await dave.stop().catch(() => {});
        }
    }, { timeout: 30000 }],
];

for (const run of runs) {
    const tag = `[${run.name}]`;
    steps.push(
        [`${tag} Converse logs in over ${run.expect.transport} (${run.settings.websocket_url || run.settings.bosh_service_url || 'XEP-0156 discovery'})`, async () => {
            await run.open(`${pageBase}/${run.name}.html`, chromiumArgs);
            await run.waitConnected();
            const { jid, transport, service } = run.info;
            check(bare(jid) === DAVE, `Converse is bound to ${jid}, expected ${DAVE}/…`);
            check(transport === run.expect.transport && service === run.expect.service,
                `Converse connected over ${transport} at ${service}, expected ${run.expect.transport} at ${run.expect.service}${run.diagnostics()}`);
            if (run.name === 'discovery') {
                const hm = run.requests.find((r) => r.includes(`https://${DOMAIN}/.well-known/host-meta`));
                check(hm && hm.endsWith('-> 200'), `no successful host-meta fetch seen: ${hm || 'none'}${run.diagnostics()}`);
                say(`  ${hm}`);
            }
            say(`  Converse is ${jid} over ${transport} at ${service}`);
        }, { timeout: 45000, group: run.name }],

        [`${tag} dave types a message to alice in Converse; alice (@xmpp/client) gets it`, async () => {
            const body = `hi alice, dave here via Converse over ${run.name} ${RUN}`;
            await run.typeMessage(ALICE, 'Alice', body);
            const m = await alice.messages.next((x) => x.body === body, `"${body}" from dave`, 10000)
                .catch((e) => { throw new Failure(e.message + run.diagnostics()); });
            check(m.from === run.info.jid, `dave's message arrived with from='${m.from}', expected Converse's full JID '${run.info.jid}'`);
            check(m.type === 'chat', `dave's message arrived with type='${m.type}', expected 'chat'`);
        }, { group: run.name, timeout: 30000 }],

        [`${tag} alice -> dave: the answer shows up in Converse`, async () => {
            const body = `hello dave, alice answering on ${run.name} ${RUN}`;
            await alice.sendChat(run.info.jid, body);
            try {
                await waitFor(async () => (await run.state()).messages.some((x) => x.body === body),
                    `Converse to receive "${body}"`, 10000, 100);
                await run.page.locator(`converse-chat[jid="${ALICE}"] .chat-msg__text`, { hasText: body })
                    .first().waitFor({ state: 'visible', timeout: 5000 });
            } catch (e) {
                const seen = (await run.state()).messages;
                throw new Failure(`${e.message}; Converse's messages: ${JSON.stringify(seen)}${run.diagnostics()}`);
            }
            const got = (await run.state()).messages.find((x) => x.body === body);
            check(bare(got.from) === ALICE, `the answer shows from='${got.from}', expected alice`);
        }, { group: run.name, timeout: 30000 }],

        ...(run.name !== 'websocket' ? [] : [
            // Converse keeps chats in the browser's storage; with that wiped, the earlier
            // messages can only come from the server's archive (XEP-0313).
            [`${tag} page reloaded with its storage cleared: Converse logs in again and shows the chat from MAM`, async () => {
                const before = run.info.jid;
                await run.reloadFresh();
                await run.waitConnected();
                check(bare(run.info.jid) === DAVE, `after the reload Converse is bound to ${run.info.jid}, expected ${DAVE}/…`);
                say(`  Converse logged in again as ${run.info.jid} (was ${before})`);
                try {
                    await run.openChat('Alice');
                } catch (e) {
                    throw new Failure(`could not open the chat with alice after the reload: ${e.message.split('\n')[0]}${run.diagnostics()}`);
                }
                await run.waitShown(ALICE, `hi alice, dave here via Converse over ${run.name} ${RUN}`, "dave's earlier message");
                await run.waitShown(ALICE, `hello dave, alice answering on ${run.name} ${RUN}`, "alice's earlier answer");
                const mam = run.stanzas().filter((l) => l.includes('urn:xmpp:mam:2'));
                check(mam.some((l) => l.includes('<query')), `Converse sent no MAM query after the reload${run.diagnostics()}`);
                check(mam.some((l) => l.includes('<result')), `Converse logged no MAM result after the reload${run.diagnostics()}`);
            }, { group: run.name, timeout: 45000 }],

            // dave's second device: another @xmpp/client session on dave's account.
            [`${tag} XEP-0280: dave's messages from a second client (@xmpp/client), and alice's to it, show up in Converse as carbons`, async () => {
                await waitFor(() => run.stanzas().some((l) => l.includes('urn:xmpp:carbons:2') && l.includes('<enable')),
                    'Converse to enable carbons', 10000, 100)
                    .catch((e) => { throw new Failure(e.message + run.diagnostics()); });
                const second = new XmppJsClient('dave (second client, @xmpp/client)', {
                    service: `ws://${HOST}:${HTTP_PORT}/xmpp-websocket`, jid: DAVE, password: env('DAVE_PASSWORD'), resource: 'second-device',
                });
                try {
                    await second.start();
                    const sent = `dave from his second device ${RUN}`;
                    await second.sendChat(alice.jid, sent);
                    await alice.messages.next((x) => x.body === sent, `"${sent}" from dave's second client`, 10000);
                    await run.waitShown(ALICE, sent, "a <sent/> carbon of dave's second client's message");
                    const received = `alice to dave's second device ${RUN}`;
                    await alice.sendChat(second.jid, received);
                    await second.messages.next((x) => x.body === received, `"${received}" at dave's second client`, 10000);
                    await run.waitShown(ALICE, received, "a <received/> carbon of alice's message to dave's second client");
                    const carbons = run.stanzas().filter((l) => l.includes('urn:xmpp:carbons:2'));
                    check(carbons.some((l) => l.includes('<sent')) && carbons.some((l) => l.includes('<received')),
                        `Converse logged no <sent/> and <received/> carbons${run.diagnostics()}`);
                } catch (e) {
                    if (e instanceof Failure) throw e;
                    throw new Failure(`${e.message}${second.describe()}${run.diagnostics()}`);
                } finally {
                    await second.stop().catch(() => {});
                }
            }, { group: run.name, timeout: 45000 }],
        ]),

        [`${tag} screenshot and log out`, async () => {
            if (!run.page) {
                say('  no page to take a screenshot of');
                return;
            }
            try {
                const file = await run.screenshot();
                say(`  screenshot: ${path.relative(process.cwd(), file)}`);
            } finally {
                await run.close();
            }
        }, { always: true, timeout: 20000, group: run.name }],
    );
}

steps.push(['alice (@xmpp/client) had no stream error throughout', () => {
    check(alice.errors.length === 0, `alice's session failed: ${alice.errors.join('; ')}${alice.describe()}`);
}, { always: true }]);

const status = await runSteps('converse_suite', steps, {
    overallMs: 170000,
    cleanup: async () => {
        for (const r of runs) await r.close();
        await alice.stop().catch(() => {});
        pageServer?.close();
    },
});
process.exit(status);
