// End-to-end story of one session for every tab (the SharedWorker), in headless Chromium
// against a running Jabberwock server: A signs in in one tab; a second tab of the same
// browser joins at once, without the form, and the server sees one session of A; B's
// message shows in both tabs, and what one tab sends shows in the other; each tab keeps
// the conversation it opened, and a message is read (no unread count, "seen" for its
// sender) only when a shown tab has its conversation open, which a tab that died no
// longer has; a tab gone leaves the other working; signing out in one signs out every
// tab; a browser without SharedWorker gets a session of its own. The browsers refuse
// module workers, as older ones do.
//
// Environment (set by run.sh): E2E_BASE_URL, E2E_DOMAIN, E2E_TRANSPORT (websocket or bosh),
// E2E_DEAD_PORT (bosh), E2E_USER_A, E2E_USER_B, E2E_USER_C, E2E_PASSWORD_A, E2E_PASSWORD_B,
// E2E_PASSWORD_C, E2E_SERVER_BIN, E2E_SERVER_CONFIG, E2E_ARTIFACTS, CHROMIUM_BIN, E2E_DEBUG.

import { execFileSync } from 'node:child_process';

import { BASE, DOMAIN, TRANSPORT, expectOnline as online, must, newContext, newPage, runSteps, shot, signIn, contact, message, send } from './lib.mjs';

const A_JID = `${must('E2E_USER_A')}@${DOMAIN}`;
const B_JID = `${must('E2E_USER_B')}@${DOMAIN}`;
const C_JID = `${must('E2E_USER_C')}@${DOMAIN}`;

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

/**
 * A browser profile of its own (`withoutSharedWorker`: as browsers that lack it). Each
 * refuses module workers, as Firefox before 114 and Safari before 15 do: the session's
 * worker is a classic script.
 */
async function openContext(withoutSharedWorker = false) {
    const context = await newContext({ viewport: { width: 1000, height: 700 } });
    await context.addInitScript(() => {
        for (const name of ['Worker', 'SharedWorker']) {
            const Native = window[name];
            if (!Native) continue;
            window[name] = class extends Native {
                constructor(url, options) {
                    if (options?.type === 'module') throw new TypeError(`no module workers in this browser (${name})`);
                    super(url, options);
                }
            };
        }
    });
    if (withoutSharedWorker) await context.addInitScript(() => { delete window.SharedWorker; });
    return context;
}

/** Hides the page as a tab in the background would be (`hidden`), or shows it again. */
async function setHidden(page, hidden) {
    await page.evaluate((hidden) => {
        if (hidden) Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
        else delete document.visibilityState;
        document.dispatchEvent(new Event('visibilitychange'));
    }, hidden);
}

/** `who`'s unread count on `page`'s contact list (0: no badge). */
async function unreadOf(page, who) {
    const badge = contact(page, who).locator('.badge');
    return (await badge.count()) ? Number(await badge.innerText()) : 0;
}

/** Fails unless `page` has `who`'s conversation open, with `text` in it. */
async function expectOpen(page, who, text) {
    await page.locator(`.contact[data-jid="${who}"][aria-current="true"]`).waitFor();
    await message(page, 'in', text).or(message(page, 'out', text)).first().waitFor();
}

/** Both of A's tabs side by side, captioned, for the README. */
async function sideBySide(name, captions) {
    const tabs = [await one.screenshot(), await two.screenshot()];
    const board = await newPage(browserB, 'board');
    await board.setViewportSize({ width: 1300, height: 520 });
    await board.setContent(`<body style="margin:0;padding:12px;display:flex;gap:12px;background:#d1d5db;font:14px sans-serif">${
        tabs.map((png, i) => `<figure style="margin:0"><figcaption>${captions[i]}</figcaption>`
            + `<img style="width:632px;border:1px solid #6b7280" src="data:image/png;base64,${png.toString('base64')}"></figure>`).join('')}</body>`);
    await shot(board, name);
    await board.close();
}

/** A adds `jid`, who accepts from `page`. */
async function befriend(page, jid) {
    await one.getByRole('button', { name: 'Add contact' }).click();
    await one.getByLabel('Their address').fill(jid);
    await one.getByRole('button', { name: 'Send request' }).click();
    await page.locator(`.request[data-jid="${A_JID}"]`).getByRole('button', { name: `Accept ${A_JID}` }).click();
    await one.locator(`.contact[data-jid="${jid}"][data-status="online"]`).waitFor();
}

const browserA = await openContext();
const browserB = await openContext();
const one = await newPage(browserA, 'A1');
const b = await newPage(browserB, 'B');
const c = await newPage(await openContext(), 'C');
let two;
const steps = [
    ['A signs in in one tab, B and C in other browsers; A adds both, they accept', async () => {
        await signIn(one, A_JID, must('E2E_PASSWORD_A'));
        await signIn(b, B_JID, must('E2E_PASSWORD_B'));
        await signIn(c, C_JID, must('E2E_PASSWORD_C'));
        await befriend(b, B_JID);
        await befriend(c, C_JID);
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

    ["B's message shows in both tabs; the second tab opened with no conversation and opens B's itself", async () => {
        await contact(one, B_JID).click();
        if (await two.locator('.contact[aria-current="true"]').count()) throw new Error('opening a conversation in one tab opened it in the other');
        await contact(two, B_JID).click();
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
    }],

    ['each tab keeps the conversation it opened', async () => {
        await contact(c, A_JID).click();
        await send(c, 'Hello from C');
        await contact(two, C_JID).click();
        await expectOpen(two, C_JID, 'Hello from C');
        // The first tab still shows B's conversation, and has not read C's message.
        await expectOpen(one, B_JID, 'Sent from tab two');
        if (await message(one, 'in', 'Hello from C').count()) throw new Error("C's message shows in the first tab's conversation with B");
        await contact(one, C_JID).locator('.badge').waitFor({ state: 'detached' });
        await contact(one, B_JID).click();
        await expectOpen(two, C_JID, 'Hello from C');
    }],

    ['a message for the conversation of the shown tab is read; one open only in a hidden tab is unread until it is shown', async () => {
        await setHidden(two, true);
        await send(c, 'For the hidden tab');
        await send(b, 'For the shown tab');
        await message(one, 'in', 'For the shown tab').waitFor();
        // B's conversation is on screen in the first tab: read, and "seen" for B.
        await message(b, 'out', 'For the shown tab').locator('.tick.seen').waitFor();
        if (await unreadOf(one, B_JID)) throw new Error("B's message counts unread while the first tab shows it");
        // C's is open only in the hidden second tab: unread, in both tabs' lists, and not seen.
        await contact(one, C_JID).locator('.badge').filter({ hasText: '1' }).waitFor();
        await contact(two, C_JID).locator('.badge').filter({ hasText: '1' }).waitFor();
        await message(two, 'in', 'For the hidden tab').waitFor();
        if (await message(c, 'out', 'For the hidden tab').locator('.tick.seen').count()) throw new Error('C saw "seen" for a tab in the background');
        await sideBySide('shared-tabs', ['Tab 1: B open, shown', 'Tab 2: C open, in the background']);
        // The second tab shown: read, the count gone everywhere, "seen" for C.
        await setHidden(two, false);
        await contact(one, C_JID).locator('.badge').waitFor({ state: 'detached' });
        await message(c, 'out', 'For the hidden tab').locator('.tick.seen').waitFor();
        await expectOpen(one, B_JID, 'For the shown tab');
        await expectOpen(two, C_JID, 'For the hidden tab');
    }],

    ['a tab that dies without pagehide no longer reads its conversation', async () => {
        // The first tab shows B's conversation. It goes as a tab the system kills does:
        // neither hidden first nor with its pagehide handler, so without a word to the worker.
        await one.evaluate(() => {
            window.addEventListener('visibilitychange', (e) => e.stopImmediatePropagation(), { capture: true });
            window.onpagehide = null;
        });
        await one.close();
        await send(b, 'After the tab died');
        await contact(two, B_JID).locator('.badge').filter({ hasText: '1' }).waitFor();
        if (await message(b, 'out', 'After the tab died').locator('.tick.seen').count()) throw new Error('B saw "seen" from a tab that is gone');
    }],

    ['one tab gone, the other goes on', async () => {
        await contact(two, B_JID).click();
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
