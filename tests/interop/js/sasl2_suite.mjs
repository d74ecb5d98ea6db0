// Interop suite: @xmpp/client (which implements SASL2, Bind2 and FAST) signs in the modern
// way, over WebSocket and over TCP (STARTTLS). Per transport, with an account of its own:
//
//   1. a password login over SASL2 (XEP-0388) binds inline (XEP-0386), with stream
//      management enabled inline, and gets a FAST token (XEP-0484)
//   2. the same device signs in again with the token and a wrong password: the token
//      alone signs it in, and is replaced by a new one
//   3. the token used in step 2 is refused when used again
//   4. a dropped connection is resumed inside SASL2's <authenticate/> (XEP-0198 inline)
//   5. a password change (XEP-0077) invalidates the device's token
//
// Started by run.sh like node_suite.mjs. Exit status 0 only if every step passed.

import WebSocket from 'ws';
import { client, xml } from '@xmpp/client';

import { Failure, check, env, runSteps, say, waitFor, within } from './lib/harness.mjs';

globalThis.WebSocket ??= WebSocket;

const DOMAIN = env('XMPP_DOMAIN');
const HOST = env('JW_HOST');
const SASL2 = 'urn:xmpp:sasl:2';
const TRANSPORTS = [
    ['WebSocket', `ws://${HOST}:${env('JW_HTTP_PORT')}/xmpp-websocket`, env('FRANK_JID'), env('FRANK_PASSWORD')],
    ['TCP', `xmpp://${HOST}:${env('JW_C2S_PORT')}`, env('GRACE_JID'), env('GRACE_PASSWORD')],
];
const open = new Set();

/** A client for `jid` on `device` whose FAST token lives in `store` (shared between clients). */
function newClient(service, jid, password, device, store, { reconnect = false } = {}) {
    const xmpp = client({
        service, domain: DOMAIN, username: jid.split('@')[0], password, resource: 'suite', timeout: 10000,
        userAgent: xml('user-agent', { id: device }, xml('software', {}, 'jabberwock interop')),
    });
    if (!reconnect) xmpp.reconnect.stop();
    const c = { xmpp, sent: [], received: [], errors: [] };
    xmpp.on('send', (el) => c.sent.push(el));
    xmpp.on('element', (el) => c.received.push(el));
    xmpp.on('error', (e) => c.errors.push(String(e && (e.condition || e.message || e))));
    xmpp.fast.fetchToken = async () => store.token;
    xmpp.fast.saveToken = async (t) => { store.token = t; };
    xmpp.fast.deleteToken = async () => { store.token = null; };
    open.add(xmpp);
    return c;
}

const authenticates = (c) => c.sent.filter((el) => el.is('authenticate', SASL2));
const trace = (c) => [...c.sent.map((el) => `SEND ${el}`), ...c.received.map((el) => `RECV ${el}`)].slice(-12).join('\n    ');

async function stop(c) {
    open.delete(c.xmpp);
    if (c.xmpp.status !== 'offline') await within(5000, 'logout', c.xmpp.stop());
}

async function start(c, what) {
    try {
        return String(await within(10000, what, c.xmpp.start()));
    } catch (e) {
        throw new Failure(`${what} failed: ${e.message} (errors: ${c.errors.join('; ')});\n    ${trace(c)}`);
    }
}

async function refused(c, what) {
    const outcome = await within(10000, what, c.xmpp.start().then(() => 'signed in', (e) => e));
    check(outcome !== 'signed in', `${what}: the client signed in;\n    ${trace(c)}`);
}

const steps = [];
for (const [transport, service, jid, password] of TRANSPORTS) {
    const device = `device-${transport}-${Math.random().toString(36).slice(2)}`;
    const store = { token: null };
    let first = null;
    const group = transport;
    steps.push([`${transport}: password login with SASL2, inline Bind2 and stream management, and a FAST token`, async () => {
        const c = newClient(service, jid, password, device, store);
        const full = await start(c, 'the password login');
        const [auth] = authenticates(c);
        check(auth && !auth.attrs.mechanism.startsWith('HT-'), `no SASL2 password login:\n    ${trace(c)}`);
        check(auth.getChild('bind', 'urn:xmpp:bind:0'), 'the client did not bind inline');
        check(full.startsWith(`${jid}/suite.`), `bound to ${full}, expected ${jid}/suite.…`);
        check(c.received.some((el) => el.is('success', SASL2) && el.getChild('bound', 'urn:xmpp:bind:0')), 'no <bound/> in the success');
        await waitFor(() => c.xmpp.streamManagement.enabled, 'stream management to be enabled inline', 3000);
        check(store.token?.token, `no FAST token was issued:\n    ${trace(c)}`);
        first = { ...store.token };
        say(`  ${full}, token for ${first.mechanism} until ${first.expiry}`);
        await stop(c);
    }, { group }]);

    steps.push([`${transport}: the token signs the device in without the password`, async () => {
        const c = newClient(service, jid, 'not the password', device, store);
        await start(c, 'the token login');
        const [auth] = authenticates(c);
        check(auth.attrs.mechanism === 'HT-SHA-256-NONE', `signed in with ${auth.attrs.mechanism}, not the token`);
        check(store.token.token !== first.token, 'the used token was not replaced');
        await stop(c);
    }, { group }]);

    steps.push([`${transport}: a token used once is refused`, async () => {
        const c = newClient(service, jid, 'not the password', device, { token: first });
        await refused(c, 'a login with the used token');
        const failure = c.received.find((el) => el.is('failure', SASL2));
        check(failure?.getChild('not-authorized'), `expected not-authorized:\n    ${trace(c)}`);
        await stop(c);
    }, { group }]);

    steps.push([`${transport}: a dropped connection is resumed inside SASL2`, async () => {
        const c = newClient(service, jid, password, `${device}-resume`, { token: null }, { reconnect: true });
        await start(c, 'the login');
        await waitFor(() => c.xmpp.streamManagement.enabled, 'stream management to be enabled inline', 3000);
        const resumed = new Promise((resolve) => c.xmpp.streamManagement.once('resumed', resolve));
        // Gone without a word, as a phone losing its network.
        const socket = c.xmpp.socket.socket;
        if (socket.terminate) socket.terminate(); else socket.destroy();
        await within(10000, 'the session to be resumed', resumed);
        const resume = authenticates(c).at(-1)?.getChild('resume', 'urn:xmpp:sm:3');
        check(resume, `the client did not resume inside <authenticate/>:\n    ${trace(c)}`);
        await stop(c);
    }, { group }]);

    steps.push([`${transport}: a password change invalidates the token`, async () => {
        const c = newClient(service, jid, password, device, store);
        await start(c, 'the token login');
        await c.xmpp.iqCaller.set(xml('query', { xmlns: 'jabber:iq:register' },
            xml('username', {}, jid.split('@')[0]), xml('password', {}, `${password}-changed`)));
        await stop(c);
        const after = newClient(service, jid, 'not the password', device, store);
        await refused(after, 'a token login after the password change');
        await stop(after);
    }, { group }]);
}

const status = await runSteps('sasl2_suite', steps, {
    overallMs: 80000,
    cleanup: async () => {
        await Promise.allSettled([...open].map((x) => within(3000, 'logout', x.stop())));
    },
});
process.exit(status);
