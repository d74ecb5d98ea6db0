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
// document and the links in it (under the server's http.public_url, https://localhost, so
// wss://localhost/xmpp-websocket) are all real. The server's certificate is the self-signed
// one it generated in its data directory; Chromium accepts that one certificate only, by
// its public-key hash (--ignore-certificate-errors-spki-list), not any certificate.

import fs from 'node:fs';
import path from 'node:path';

import { ConverseRun, DIST, page, spkiHash, startPageServer } from './lib/converse.mjs';
import { Failure, check, env, runSteps, say, waitFor } from './lib/harness.mjs';
import { XmppJsClient } from './lib/xmppjs.mjs';

const DOMAIN = env('XMPP_DOMAIN');
const HOST = env('JW_HOST');
const HTTP_PORT = env('JW_HTTP_PORT');
const HTTPS_PORT = env('JW_HTTPS_PORT');
const CERT_FILE = env('JW_CERT_FILE');
const ALICE = env('ALICE_JID');
const DAVE = env('DAVE_JID');
const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const RUN = Math.random().toString(36).slice(2, 8);

const bare = (jid) => String(jid).split('/')[0];

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
