// Converse.js in Debian's headless Chromium, for the interop suites: a page server for
// Converse's dist files and a test page per run (with a probe plugin that records what
// Converse does), and one browser run (ConverseRun) with the helpers the suites share.

import { createHash, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { chromium } from 'playwright-core';

import { Failure, debugEnabled, say, waitFor, within } from './harness.mjs';

const HERE = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const ARTIFACTS = process.env.INTEROP_ARTIFACTS || path.join(HERE, 'artifacts');
export const DIST = path.join(HERE, 'node_modules', 'converse.js', 'dist');
const PLUGIN = 'jabberwock-interop';

// -- the page server ---------------------------------------------------------------------

const TYPES = {
    '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8',
    '.json': 'application/json', '.map': 'application/json', '.wasm': 'application/wasm', '.svg': 'image/svg+xml',
    '.png': 'image/png', '.ico': 'image/x-icon', '.woff': 'font/woff', '.woff2': 'font/woff2', '.ttf': 'font/ttf',
    '.mp3': 'audio/mpeg', '.ogg': 'audio/ogg',
};

/** The test page: Converse's dist files, a probe plugin, and converse.initialize(settings). */
export function page(name, settings) {
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

export function startPageServer(pages) {
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
export function spkiHash(certFile) {
    const cert = new X509Certificate(fs.readFileSync(certFile));
    const der = cert.publicKey.export({ type: 'spki', format: 'der' });
    return createHash('sha256').update(der).digest('base64');
}

// -- one Converse run ------------------------------------------------------------------------

export class ConverseRun {
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
