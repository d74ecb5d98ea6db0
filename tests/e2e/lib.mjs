// What the end-to-end suites share: the settings run.sh gives every suite, one headless
// Chromium (Debian's, driven by playwright-core), browser profiles that reach only
// loopback (and, in the BOSH run, find WebSocket refused, so that the client falls back
// by itself), pages whose console is kept for the failure report, screenshots, signing
// in, the conversation's usual locators, stopping and starting the server, and the loop
// that runs a suite's steps and reports.
//
// Environment (set by run.sh): E2E_BASE_URL, E2E_DOMAIN, E2E_TRANSPORT (websocket or
// bosh), E2E_DEAD_PORT (bosh), E2E_ARTIFACTS, CHROMIUM_BIN, E2E_SERVER_BIN,
// E2E_SERVER_CONFIG, E2E_SERVER_LOG, E2E_SERVER_PIDFILE (how to start the server again),
// E2E_DEBUG=1 (print the pages' consoles as they go); each suite names its own accounts.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { chromium } from 'playwright-core';

export function must(name) {
    const v = process.env[name];
    if (!v) throw new Error(`${name} is not set`);
    return v;
}

export function say(msg) {
    process.stderr.write(`e2e: ${msg}\n`);
}

export const BASE = must('E2E_BASE_URL');
export const DOMAIN = process.env.E2E_DOMAIN || 'localhost';
export const TRANSPORT = process.env.E2E_TRANSPORT || 'websocket';
export const ARTIFACTS = process.env.E2E_ARTIFACTS || path.resolve('artifacts');
export const DEBUG = !!process.env.E2E_DEBUG;
/** How long a step waits for what it expects, unless it says otherwise. */
export const STEP_TIMEOUT = 20000;

/** The pages opened, by name, and the lines of each one's console: a failure report
 * shows both. */
export const pages = {};
export const logs = {};
// Uncaught errors in a page (a panic in the client's WebAssembly among them) fail the
// suite even when every step passed.
let pageErrors = 0;

fs.mkdirSync(ARTIFACTS, { recursive: true });

export const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || '/usr/bin/chromium',
    headless: true,
    // playwright gives every launch a fresh temporary --user-data-dir of its own.
    args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
    timeout: 30000,
});

/**
 * A browser profile of its own. `options` go to playwright's `newContext`; service
 * workers are blocked unless they say `serviceWorkers: 'allow'` (a service worker answers
 * requests where the routes below cannot see them). `protocolLog: false` leaves the
 * client's protocol log off (the figures of perf.mjs would count it).
 */
export async function newContext({ protocolLog = true, ...options } = {}) {
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, serviceWorkers: 'block', ...options });
    // Only loopback is ever contacted: anything else is refused.
    await context.route('**/*', (route) => {
        const url = route.request().url();
        const { hostname } = new URL(url);
        if (['127.0.0.1', 'localhost', '[::1]'].includes(hostname) || url.startsWith('data:')) return route.fallback();
        return route.abort('blockedbyclient');
    });
    if (TRANSPORT === 'bosh') {
        // As if WebSocket were blocked on the way: its advertised endpoint refuses connections
        // (and, being on another port, the page's Content-Security-Policy refuses it first:
        // the client must fall back either way).
        const base = new URL(BASE);
        const dead = `ws://127.0.0.1:${must('E2E_DEAD_PORT')}/xmpp-websocket`;
        await context.route(`${base.origin}/.well-known/host-meta.json`, (route) => route.fulfill({
            contentType: 'application/json',
            headers: { 'access-control-allow-origin': '*' },
            body: JSON.stringify({ links: [
                { rel: 'urn:xmpp:alt-connections:websocket', href: dead },
                { rel: 'urn:xmpp:alt-connections:xbosh', href: `${base.origin}/http-bind` },
            ] }),
        }));
    }
    // The client logs its protocol traffic to the console, which is printed on failure.
    // (Frames of other sites may be denied storage: the embedded widget then goes without.)
    if (protocolLog) await context.addInitScript(() => { try { window.localStorage.setItem('jabberwock.debug', '1'); } catch {} });
    return context;
}

/** A page of `context`, called `name` in the report. */
export async function newPage(context, name) {
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT);
    logs[name] = [];
    page.on('console', (m) => {
        logs[name].push(`console.${m.type()}: ${m.text()}`);
        if (DEBUG) say(`  [${name}] console.${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => {
        pageErrors++;
        logs[name].push(`pageerror: ${e.stack || e}`);
        say(`  [${name}] page error: ${e.message || e}`);
    });
    pages[name] = page;
    return page;
}

/** A screenshot in the artifacts, its name prefixed by the transport but for WebSocket. */
export async function shot(page, name) {
    const prefix = TRANSPORT === 'websocket' ? '' : `${TRANSPORT}-`;
    await page.screenshot({ path: path.join(ARTIFACTS, `${prefix}${name}.png`) });
}

/** Fills in the sign-in form and sends it. */
export async function login(page, jid, password) {
    await page.goto(BASE, { waitUntil: 'load' });
    await page.getByLabel('Address', { exact: true }).fill(jid);
    await page.getByLabel('Password', { exact: true }).fill(password);
    await page.getByRole('button', { name: 'Sign in' }).click();
}

/** The page says it is online, over the transport of this run. */
export async function expectOnline(page) {
    await page.getByTestId('connection-status').filter({ hasText: 'Online' }).waitFor();
    const used = await page.getByTestId('connection-status').getAttribute('data-transport');
    if (used !== TRANSPORT) throw new Error(`connected over ${used}, expected ${TRANSPORT}`);
}

export async function signIn(page, jid, password) {
    await login(page, jid, password);
    await expectOnline(page);
}

// ---- stopping and starting the server (E2E_SERVER_BIN, E2E_SERVER_CONFIG, E2E_SERVER_LOG,
// E2E_SERVER_PIDFILE) ----

/** Stops the server (SIGTERM, as an operator would) and waits until it is gone. */
export async function stopServer() {
    const pidFile = must('E2E_SERVER_PIDFILE');
    const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
    process.kill(pid, 'SIGTERM');
    const deadline = Date.now() + 15000;
    for (;;) {
        try {
            process.kill(pid, 0);
        } catch {
            break;
        }
        if (Date.now() > deadline) throw new Error(`the server (pid ${pid}) did not stop`);
        await new Promise((r) => setTimeout(r, 100));
    }
}

/** Waits until the restarted server answers HTTP. */
export async function serverListening() {
    const deadline = Date.now() + 15000;
    for (;;) {
        try {
            if ((await fetch(`${BASE}/healthz`)).ok) return;
        } catch {
            // Not listening yet.
        }
        if (Date.now() > deadline) throw new Error('the server did not come back');
        await new Promise((r) => setTimeout(r, 50));
    }
}

/** Starts the server again on the same data; its pid goes to the pid file. */
export function startServer() {
    const pidFile = must('E2E_SERVER_PIDFILE');
    const log = fs.openSync(must('E2E_SERVER_LOG'), 'a');
    const child = spawn(must('E2E_SERVER_BIN'), ['--config', must('E2E_SERVER_CONFIG'), 'serve'], {
        detached: true,
        stdio: ['ignore', log, log],
        env: { ...process.env, NO_COLOR: '1' },
    });
    child.unref();
    fs.writeFileSync(pidFile, `${child.pid}\n`);
}

/** A contact in the roster. */
export const contact = (page, jid) => page.locator(`.contact[data-jid="${jid}"]`);
/** A message of the open conversation, `in` or `out`, by its text. */
export const message = (page, dir, text) => page.locator(`.msg.${dir}`).filter({ hasText: text });

/** Writes `text` in the conversation's composer and sends it. */
export async function send(page, text) {
    const box = page.getByTestId('composer');
    await box.fill(text);
    await box.press('Enter');
}

/**
 * Runs `steps` ([name, async function] pairs) in order and exits: at the first failure,
 * after a screenshot of every open page (`<suite>-failure-<page>`) and their consoles.
 * `suite` names the suite in the summary.
 */
export async function runSteps(suite, steps) {
    let failed = false;
    for (const [name, run] of steps) {
        const start = Date.now();
        try {
            await run();
            say(`ok    ${name} (${Date.now() - start} ms)`);
        } catch (e) {
            failed = true;
            say(`FAIL  ${name}: ${e.stack || e}`);
            break;
        }
    }
    if (failed) {
        for (const [name, page] of Object.entries(pages)) {
            if (!page.isClosed()) await shot(page, `${suite}-failure-${name}`).catch(() => {});
            say(`---- ${name}'s console ----`);
            for (const line of logs[name]) say(`  ${line}`);
        }
    }
    await browser.close();
    say(failed ? `${TRANSPORT} ${suite}: failed; screenshots in ${ARTIFACTS}` : `${TRANSPORT} ${suite}: all ${steps.length} steps passed`);
    if (pageErrors) say(`${pageErrors} uncaught error(s) in the pages: failed`);
    process.exit(failed || pageErrors ? 1 : 0);
}
