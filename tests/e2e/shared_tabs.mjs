// End-to-end story of one session for every tab (the SharedWorker), in headless Chromium
// against a running Jabberwock server: A signs in in one tab; a second tab of the same
// browser joins at once, without the form, and the server sees one session of A; B's
// message shows in both tabs, and what one tab sends shows in the other; a tab closed
// leaves the other working; signing out in one signs out every tab; a browser without
// SharedWorker gets a session of its own.
//
// Environment (set by run.sh): E2E_BASE_URL, E2E_DOMAIN, E2E_TRANSPORT (websocket or bosh),
// E2E_DEAD_PORT (bosh), E2E_USER_A, E2E_USER_B, E2E_PASSWORD_A, E2E_PASSWORD_B,
// E2E_SERVER_BIN, E2E_SERVER_CONFIG, E2E_ARTIFACTS, CHROMIUM_BIN, E2E_DEBUG.

import { execFileSync } from 'node:child_process';

import { BASE, DOMAIN, TRANSPORT, expectOnline as online, must, newContext, newPage, runSteps, shot, signIn, contact, message, send } from './lib.mjs';

const A_JID = `${must('E2E_USER_A')}@${DOMAIN}`;
const B_JID = `${must('E2E_USER_B')}@${DOMAIN}`;

/** A's sessions on the server, as its admin command lists them (one line each). */
function sessionsOf(jid) {
    const out = execFileSync(must('E2E_SERVER_BIN'), ['--config', must('E2E_SERVER_CONFIG'), 'sessions', jid], { encoding: 'utf8' });
    return out.split('\n').filter((l) => l.startsWith(`${jid}/`));
}

/** Waits until `jid` has `n` sessions (a closed one ends when the stream does). */
async function expectSessions(jid, n) {
    const deadline = Date.now() + 10000;
    let lines = sessionsOf(jid);
    while (lines.length !== n && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        lines = sessionsOf(jid);
    }
    if (lines.length !== n) throw new Error(`${jid} has ${lines.length} sessions, expected ${n}: ${lines.join('; ')}`);
    return lines;
}

/** A browser profile of its own (`withoutSharedWorker`: as browsers that lack it). */
async function openContext(withoutSharedWorker = false) {
    const context = await newContext({ viewport: { width: 1000, height: 700 } });
    if (withoutSharedWorker) await context.addInitScript(() => { delete window.SharedWorker; });
    return context;
}

const browserA = await openContext();
const browserB = await openContext();
const one = await newPage(browserA, 'A1');
const b = await newPage(browserB, 'B');
let two;
const steps = [
    ['A signs in in one tab, B in another browser; A adds B, B accepts', async () => {
        await signIn(one, A_JID, must('E2E_PASSWORD_A'));
        await signIn(b, B_JID, must('E2E_PASSWORD_B'));
        await one.getByRole('button', { name: 'Add contact' }).click();
        await one.getByLabel('Their address').fill(B_JID);
        await one.getByRole('button', { name: 'Send request' }).click();
        await b.locator(`.request[data-jid="${A_JID}"]`).getByRole('button', { name: `Accept ${A_JID}` }).click();
        await one.locator(`.contact[data-jid="${B_JID}"][data-status="online"]`).waitFor();
        await expectSessions(A_JID, 1);
    }],

    ['a second tab joins the session at once: no form, the contacts there, one session on the server', async () => {
        two = await newPage(browserA, 'A2');
        await two.goto(BASE, { waitUntil: 'load' });
        await online(two);
        await two.locator(`.contact[data-jid="${B_JID}"][data-status="online"]`).waitFor();
        if (await two.getByLabel('Password', { exact: true }).count()) throw new Error('the second tab shows the sign-in form');
        const used = await two.getByTestId('connection-status').getAttribute('data-transport');
        if (used !== TRANSPORT) throw new Error(`the second tab shows ${used}, expected ${TRANSPORT}`);
        await expectSessions(A_JID, 1);
    }],

    ["B's message shows in both tabs", async () => {
        await contact(one, B_JID).click();
        await contact(b, A_JID).click();
        await send(b, 'Hello to every tab');
        await message(one, 'in', 'Hello to every tab').waitFor();
        await message(two, 'in', 'Hello to every tab').waitFor();
    }],

    ['what the second tab sends shows in the first, and reaches B once', async () => {
        await send(two, 'Sent from tab two');
        await message(one, 'out', 'Sent from tab two').waitFor();
        await message(b, 'in', 'Sent from tab two').waitFor();
        await b.waitForTimeout(300);
        const copies = await message(b, 'in', 'Sent from tab two').count();
        if (copies !== 1) throw new Error(`B got ${copies} copies`);
        // Both tabs side by side, for the README.
        const tabs = [await one.screenshot(), await two.screenshot()];
        const board = await newPage(browserB, 'board');
        await board.setViewportSize({ width: 1300, height: 520 });
        await board.setContent(`<body style="margin:0;padding:12px;display:flex;gap:12px;background:#d1d5db;font:14px sans-serif">${
            tabs.map((png, i) => `<figure style="margin:0"><figcaption>Tab ${i + 1}</figcaption>`
                + `<img style="width:632px;border:1px solid #6b7280" src="data:image/png;base64,${png.toString('base64')}"></figure>`).join('')}</body>`);
        await shot(board, 'shared-tabs');
        await board.close();
    }],

    ['one tab closed, the other goes on', async () => {
        await one.close();
        await send(b, 'Still there?');
        await message(two, 'in', 'Still there?').waitFor();
        await send(two, 'Yes, in the other tab');
        await message(b, 'in', 'Yes, in the other tab').waitFor();
        await expectSessions(A_JID, 1);
    }],

    ['a browser without SharedWorker gets a session of its own', async () => {
        const plain = await openContext(true);
        const alone = await newPage(plain, 'A-alone');
        await signIn(alone, A_JID, must('E2E_PASSWORD_A'));
        await expectSessions(A_JID, 2);
        await alone.getByRole('button', { name: 'Sign out' }).click();
        await alone.getByLabel('Password', { exact: true }).waitFor();
        await expectSessions(A_JID, 1);
        await plain.close();
    }],

    ['signing out in one tab signs out every tab', async () => {
        const three = await newPage(browserA, 'A3');
        await three.goto(BASE, { waitUntil: 'load' });
        await online(three);
        await two.getByRole('button', { name: 'Sign out' }).click();
        await two.getByLabel('Password', { exact: true }).waitFor();
        await three.getByLabel('Password', { exact: true }).waitFor();
        await expectSessions(A_JID, 0);
    }],
];

await runSteps('shared tabs', steps);
