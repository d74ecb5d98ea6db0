// Group chat in a browser: two Converse.js instances (unmodified npm release, Debian's
// headless Chromium driven by playwright-core) in one room on the server's MUC service.
//
// Started by run.sh (see there for the environment). dave's Converse connects over
// WebSocket and erin's over BOSH; both have the room in auto_join_rooms. dave enters first
// and Converse creates it (an instant room, Converse's default). Then, as people would:
// each types a message into the room's message box and the other's Converse shows it;
// each sees the other in the occupant list; dave's page is reloaded with the browser's
// storage wiped, Converse joins again (without history, since the room advertises
// XEP-0313) and shows the earlier messages from the room's archive, each exactly once;
// erin logs out and leaves dave's occupant list. Screenshots go to artifacts/.

import fs from 'node:fs';
import path from 'node:path';

import { ConverseRun, DIST, page, startPageServer } from './lib/converse.mjs';
import { Failure, check, env, runSteps, say, waitFor } from './lib/harness.mjs';

const DOMAIN = env('XMPP_DOMAIN');
const HOST = env('JW_HOST');
const HTTP_PORT = env('JW_HTTP_PORT');
const RUN = Math.random().toString(36).slice(2, 8);
const ROOM = `converse-${RUN}@conference.${DOMAIN}`;

const common = {
    auto_login: true,
    auto_reconnect: false,
    i18n: 'en',
    loglevel: 'debug',
    play_sounds: false,
    show_desktop_notifications: false,
    blacklisted_plugins: ['converse-omemo'],
    discover_connection_methods: false,
    view_mode: 'fullscreen',
};

const dave = new ConverseRun('muc-websocket', {
    ...common,
    jid: env('DAVE_JID'),
    password: env('DAVE_PASSWORD'),
    websocket_url: `ws://${HOST}:${HTTP_PORT}/xmpp-websocket`,
    auto_join_rooms: [{ jid: ROOM, nick: 'dave' }],
}, { transport: 'websocket' });

const erin = new ConverseRun('muc-bosh', {
    ...common,
    jid: env('ERIN_JID'),
    password: env('ERIN_PASSWORD'),
    bosh_service_url: `http://${HOST}:${HTTP_PORT}/http-bind`,
    auto_join_rooms: [{ jid: ROOM, nick: 'erin' }],
}, { transport: 'bosh' });

const runs = [dave, erin];
let pageServer;
let pageBase;

const room = (run) => run.page.locator(`converse-muc[jid="${ROOM}"]`);

/** Waits until Converse shows the room with its message box: it has entered. */
async function waitEntered(run) {
    try {
        await room(run).locator('textarea.chat-textarea').waitFor({ state: 'visible', timeout: 20000 });
    } catch (e) {
        throw new Failure(`${run.name}: Converse did not enter ${ROOM}: ${e.message.split('\n')[0]}${run.diagnostics()}`);
    }
}

async function sayInRoom(run, body) {
    const box = room(run).locator('textarea.chat-textarea');
    await box.click();
    await box.fill(body);
    await box.press('Enter');
}

/** The texts of the room's messages as Converse shows them. */
function shown(run) {
    return room(run).locator('.chat-msg__text').allTextContents().then((texts) => texts.map((t) => t.trim()));
}

async function waitShownOnce(run, body, what) {
    try {
        await waitFor(async () => (await shown(run)).filter((t) => t === body).length >= 1, what, 15000, 200);
    } catch (e) {
        throw new Failure(`${run.name}: ${e.message}; the room shows ${JSON.stringify(await shown(run))}${run.diagnostics()}`);
    }
    const n = (await shown(run)).filter((t) => t === body).length;
    check(n === 1, `${run.name}: "${body}" is shown ${n} times`);
}

/** The nicks in the room's occupant list, as Converse shows them. */
function occupants(run) {
    return room(run).locator('.occupant-list .occupant-nick').allTextContents().then((t) => t.map((x) => x.trim()));
}

async function waitOccupants(run, pred, what) {
    try {
        await waitFor(async () => pred(await occupants(run)), what, 15000, 200);
    } catch (e) {
        throw new Failure(`${run.name}: ${e.message}; the occupant list shows ${JSON.stringify(await occupants(run))}${run.diagnostics()}`);
    }
}

const fromDave = `dave in the room over WebSocket ${RUN}`;
const fromErin = `erin answering over BOSH ${RUN}`;

const steps = [
    ['serve the test pages', async () => {
        check(fs.existsSync(path.join(DIST, 'converse.min.js')), `no ${DIST}/converse.min.js: run scripts/setup-js-env.sh`);
        pageServer = await startPageServer(new Map(runs.map((r) => [`/${r.name}.html`, page(r.name, r.settings)])));
        pageBase = `http://127.0.0.1:${pageServer.address().port}`;
    }],

    ['dave (Converse over WebSocket) creates and enters the room', async () => {
        await dave.open(`${pageBase}/${dave.name}.html`, ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run']);
        await dave.waitConnected();
        check(dave.info.transport === 'websocket', `dave connected over ${dave.info.transport}`);
        await waitEntered(dave);
        // Converse submits the instant-room form when the room is new (status 201).
        await waitFor(() => dave.stanzas().some((l) => l.includes('muc#owner') && l.includes('type="submit"')),
            "Converse to configure the new room", 10000, 100)
            .catch((e) => { throw new Failure(e.message + dave.diagnostics()); });
    }, { timeout: 60000 }],

    ['erin (Converse over BOSH) enters the room', async () => {
        await erin.open(`${pageBase}/${erin.name}.html`, ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run']);
        await erin.waitConnected();
        check(erin.info.transport === 'bosh', `erin connected over ${erin.info.transport}`);
        await waitEntered(erin);
        await waitOccupants(dave, (o) => o.includes('erin'), "erin in dave's occupant list");
        await waitOccupants(erin, (o) => o.includes('dave') && o.includes('erin'), "both in erin's occupant list");
    }, { timeout: 60000 }],

    ['each types a message into the room; the other sees it', async () => {
        await sayInRoom(dave, fromDave);
        await waitShownOnce(erin, fromDave, "dave's message in erin's room view");
        await sayInRoom(erin, fromErin);
        await waitShownOnce(dave, fromErin, "erin's message in dave's room view");
        await waitShownOnce(dave, fromDave, "dave's own message");
    }, { timeout: 60000 }],

    ["dave's page is reloaded with its storage cleared: the room's history comes from its archive, once", async () => {
        await dave.reloadFresh();
        await dave.waitConnected();
        await waitEntered(dave);
        await waitShownOnce(dave, fromDave, "dave's earlier message after the reload");
        await waitShownOnce(dave, fromErin, "erin's earlier message after the reload");
        const mam = dave.stanzas().filter((l) => l.includes('urn:xmpp:mam:2'));
        check(mam.some((l) => l.includes('<query') && l.includes(ROOM)), `Converse sent no MAM query to the room${dave.diagnostics()}`);
        const join = dave.stanzas().find((l) => l.includes('<presence') && l.includes(`${ROOM}/dave`));
        check(join && /maxstanzas="0"|maxchars="0"/.test(join), `Converse joined asking for history: ${join}`);
    }, { timeout: 60000 }],

    ["erin logs out; dave's occupant list no longer shows her", async () => {
        await erin.screenshot().then((f) => say(`  screenshot: ${path.basename(f)}`)).catch(() => {});
        await erin.close();
        await waitOccupants(dave, (o) => o.includes('dave') && !o.includes('erin'), "erin gone from dave's occupant list");
    }, { timeout: 30000 }],

    ['screenshot and log out', async () => {
        if (dave.page) {
            const file = await dave.screenshot();
            say(`  screenshot: ${path.basename(file)}`);
        }
        await dave.close();
    }, { always: true, timeout: 20000 }],
];

const status = await runSteps('converse_muc_suite', steps, {
    overallMs: 170000,
    cleanup: async () => {
        for (const r of runs) await r.close();
        pageServer?.close();
    },
});
process.exit(status);
