// End-to-end user stories for the web client, in headless Chromium (Debian's, driven by
// playwright-core) against a running Jabberwock server.
//
// Environment (set by run.sh):
//   E2E_BASE_URL       the server's HTTP base, e.g. http://localhost:41234
//   E2E_DOMAIN         the XMPP domain (localhost)
//   E2E_USER_A, E2E_USER_B, E2E_PASSWORD_A, E2E_PASSWORD_B
//                      the two accounts (localparts), which must not know each other yet
//   E2E_USER_C, E2E_PASSWORD_C
//                      a third account, a stranger who writes to the second
//   E2E_TRANSPORT      websocket (default) or bosh: for bosh, discovery is answered with a
//                      WebSocket endpoint that refuses connections, so the client must fall
//                      back to BOSH by itself
//   E2E_DEAD_PORT      a loopback port nothing listens on (for the bosh run)
//   E2E_SERVER_BIN, E2E_SERVER_CONFIG, E2E_SERVER_LOG, E2E_SERVER_PIDFILE
//                      how to restart the server (the reconnect story); the new pid goes
//                      to the pid file
//   E2E_ARTIFACTS      where screenshots go
//   CHROMIUM_BIN       default /usr/bin/chromium
//   E2E_DEBUG=1        print the pages' console
//
// Exits non-zero when a step fails, after saving a screenshot of every open page.

import http from 'node:http';
import { fileURLToPath } from 'node:url';

import {
    BASE, DOMAIN, TRANSPORT, contact, expectOnline, login, logs, must, newContext, newPage, pages, runSteps, send, serverListening, shot,
    startServer, stopServer,
} from './lib.mjs';

const USER_A = process.env.E2E_USER_A || 'alice';
const USER_B = process.env.E2E_USER_B || 'bob';
const ALICE = `${USER_A}@${DOMAIN}`;
const BOB = `${USER_B}@${DOMAIN}`;
const USER_C = process.env.E2E_USER_C || 'kim';
const STRANGER = `${USER_C}@${DOMAIN}`;
const ALICE_NAME = USER_A[0].toUpperCase() + USER_A.slice(1);
const BOB_NAME = USER_B[0].toUpperCase() + USER_B.slice(1);
const NEW_PASSWORD_A = `changed-${Date.now()}`;

/** A browser profile of its own with one page, `name` in the report. */
async function openPage(name, options = {}) {
    return newPage(await newContext(options), name);
}

async function expectContactStatus(page, jid, status) {
    await page.locator(`.contact[data-jid="${jid}"][data-status="${status}"]`).waitFor();
}

/** Stops the server (SIGTERM, as an operator would) and starts it again on the same data. */
async function restartServer() {
    await stopServer();
    startServer();
}

/**
 * Reloads `page`, holding the new page's WebAssembly until `meanwhile` has run: the old
 * page is gone (its connection dropped, its session state saved) and the new one has not
 * started yet.
 */
async function reloadHeld(page, meanwhile) {
    let release;
    const held = new Promise((r) => { release = r; });
    await page.route('**/*.wasm', async (route) => { await held; await route.fallback(); });
    try {
        await page.reload({ waitUntil: 'commit' });
        await meanwhile();
    } finally {
        release();
    }
    await page.waitForLoadState('load');
    await page.unroute('**/*.wasm');
}

// Each step is a user story; they run in order and share the pages.
const steps = [
    ['the page loads and shows the sign-in form', async () => {
        const a = await openPage('alice');
        await a.goto(BASE, { waitUntil: 'load' });
        await a.getByRole('heading', { name: 'Sign in to chat' }).waitFor();
        await a.getByTestId('connection-status').filter({ hasText: 'Signed out' }).waitFor();
        await shot(a, '01-login');
    }],

    ['a wrong password shows a clear error', async () => {
        const a = pages.alice;
        await login(a, ALICE, 'not-the-password');
        const err = a.getByTestId('login-error');
        await err.waitFor();
        const text = (await err.textContent()).trim();
        if (!/wrong address or password/i.test(text)) throw new Error(`unexpected error text: ${text}`);
        await shot(a, '02-wrong-password');
    }],

    ['alice and bob sign in, in two browser contexts', async () => {
        const a = pages.alice;
        await a.getByLabel('Password', { exact: true }).fill(must('E2E_PASSWORD_A'));
        await a.getByRole('button', { name: 'Sign in' }).click();
        await expectOnline(a);
        // bob's context prefers the dark scheme: the screenshots show both themes.
        const b = await openPage('bob', { colorScheme: 'dark' });
        await login(b, BOB, must('E2E_PASSWORD_B'));
        await expectOnline(b);
        await a.getByText('No contacts yet').waitFor();
        await shot(a, '03-alice-online-empty');
    }],

    ['alice adds bob (subscribe)', async () => {
        const a = pages.alice;
        await a.getByRole('button', { name: 'Add contact' }).click();
        await a.getByLabel('Their address').fill(BOB);
        await a.getByLabel('Name (optional)').fill(BOB_NAME);
        await a.getByRole('button', { name: 'Send request' }).click();
        await contact(a, BOB).waitFor();
        await contact(a, BOB).getByText('Awaiting approval').waitFor();
        await shot(a, '04-alice-request-sent');
    }],

    ['bob sees the request and accepts it', async () => {
        const b = pages.bob;
        const req = b.locator(`.request[data-jid="${ALICE}"]`);
        await req.waitFor();
        await shot(b, '05-bob-request');
        await req.getByRole('button', { name: `Accept ${ALICE}` }).click();
        await req.waitFor({ state: 'detached' });
    }],

    ['both see each other online', async () => {
        await expectContactStatus(pages.alice, BOB, 'online');
        await expectContactStatus(pages.bob, ALICE, 'online');
        await shot(pages.alice, '06-alice-sees-bob-online');
    }],

    ['alice writes to bob; the text is shown as text, never as HTML', async () => {
        const a = pages.alice;
        await contact(a, BOB).click();
        await a.getByTestId('chat-title').filter({ hasText: BOB_NAME }).waitFor();
        await send(a, `Hello ${BOB_NAME}! <b>not bold</b> <img src=x onerror="window.pwned=1">`);
        await a.locator('.msg.out .body').filter({ hasText: `Hello ${BOB_NAME}!` }).waitFor();

        const b = pages.bob;
        // Unread badge on alice's row, then the message in the conversation.
        await contact(b, ALICE).locator('.badge').waitFor();
        await contact(b, ALICE).click();
        const body = b.locator('.msg.in .body').filter({ hasText: `Hello ${BOB_NAME}!` });
        await body.waitFor();
        const text = await body.textContent();
        if (!text.includes('<b>not bold</b>')) throw new Error(`markup was not shown literally: ${text}`);
        if ((await b.locator('.log b, .log img').count()) !== 0) throw new Error('message markup became elements');
        if (await b.evaluate(() => window.pwned)) throw new Error('message markup ran script');
    }],

    ['alice sees bob typing', async () => {
        const b = pages.bob;
        await b.getByTestId('composer').fill(`Hi ${ALICE_NAME}! See https://example.org/docs?x=1.`);
        const a = pages.alice;
        await a.getByTestId('typing').filter({ hasText: `${BOB_NAME} is typing` }).waitFor();
        await shot(a, '07-alice-sees-typing');
    }],

    ['bob answers with a link; alice gets it with the link clickable, and the typing ends', async () => {
        const b = pages.bob;
        await b.getByTestId('composer').press('Enter');
        await b.locator('.msg.out .body').filter({ hasText: `Hi ${ALICE_NAME}!` }).waitFor();
        const a = pages.alice;
        await a.getByTestId('typing').filter({ hasText: 'is typing' }).waitFor({ state: 'detached' });
        const body = a.locator('.msg.in .body').filter({ hasText: `Hi ${ALICE_NAME}!` });
        await body.waitFor();
        const link = body.locator('a');
        const href = await link.getAttribute('href');
        if (href !== 'https://example.org/docs?x=1') throw new Error(`link href: ${href}`);
        if ((await link.getAttribute('rel'))?.includes('noopener') !== true) throw new Error('link without rel=noopener');
        // alice's client confirmed it (XEP-0184): bob's message gets the delivered tick.
        await b.locator('.msg.out').filter({ hasText: `Hi ${ALICE_NAME}!` }).getByRole('img', { name: 'delivered', exact: true }).waitFor();
        await send(a, `Thanks, ${BOB_NAME}.`);
        await b.locator('.msg.in .body').filter({ hasText: `Thanks, ${BOB_NAME}.` }).waitFor();
        await shot(a, '08-alice-chat');
        await shot(b, '09-bob-chat-dark');
    }],

    ['alice puts bob in a roster group', async () => {
        const a = pages.alice;
        await a.getByRole('button', { name: 'Edit name and groups' }).click();
        await a.getByLabel('Groups, separated by commas').fill('Friends');
        await a.getByRole('button', { name: 'Save' }).click();
        await a.getByRole('group', { name: 'Friends' }).locator(`.contact[data-jid="${BOB}"]`).waitFor();
    }],

    ['bob sets his picture; alice sees it beside his name', async () => {
        const b = pages.bob;
        const picture = fileURLToPath(new URL('../../web-client/icons/icon-512.png', import.meta.url));
        await b.getByTestId('avatar-file').setInputFiles(picture);
        await b.locator('.me-card .avatar-img').waitFor();
        const shown = contact(pages.alice, BOB).locator('.avatar-img');
        await shown.waitFor();
        const src = await shown.getAttribute('src');
        if (!src.startsWith('data:image/jpeg;base64,')) throw new Error(`picture shown from ${src.slice(0, 40)}`);
    }],

    ['with the tab in the background, alice gets a desktop notification and the unread count in the title', async () => {
        const a = pages.alice;
        await a.context().grantPermissions(['notifications'], { origin: new URL(BASE).origin });
        await a.getByRole('button', { name: 'Settings' }).click();
        await a.getByLabel('Desktop notifications').check();
        await a.getByRole('button', { name: 'Settings' }).click();
        // Record notifications, and put the tab in the background.
        await a.evaluate(() => {
            window.shown = [];
            const Native = window.Notification;
            window.Notification = class extends Native {
                constructor(title, options) {
                    super(title, options);
                    window.shown.push({ title, body: options.body });
                }
            };
            Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
            document.dispatchEvent(new Event('visibilitychange'));
        });
        await send(pages.bob, 'Are you there?');
        await a.waitForFunction(() => window.shown.length === 1);
        const shown = await a.evaluate(() => window.shown[0]);
        if (shown.title !== `${BOB_NAME}` || shown.body !== 'Are you there?') throw new Error(`notification: ${JSON.stringify(shown)}`);
        await a.waitForFunction(() => document.title === '(1) Jabberwock');
        await a.evaluate(() => {
            delete document.visibilityState;
            document.dispatchEvent(new Event('visibilitychange'));
        });
        await a.waitForFunction(() => document.title === 'Jabberwock');
    }],

    ['alice sets "away" with a status message, and bob sees it', async () => {
        const a = pages.alice;
        await a.getByLabel('Your availability').selectOption('away');
        await a.getByLabel('Status message').fill('Lunch, back at two');
        await a.getByLabel('Status message').press('Enter');
        const b = pages.bob;
        await expectContactStatus(b, ALICE, 'away');
        await b.getByTestId('chat-status').filter({ hasText: 'Away · Lunch, back at two' }).waitFor();
        await expectContactStatus(a, BOB, 'online');
    }],

    ['bob goes idle: alice sees him away, and available again when he is back', async () => {
        const b = pages.bob;
        await b.getByRole('button', { name: 'Settings' }).click();
        await shot(b, '16-bob-settings');
        // A one-second timeout, through the setting's own control.
        await b.getByTestId('away-after').evaluate((select) => {
            select.add(new Option('After 1 second', '1'));
            select.value = '1';
            select.dispatchEvent(new Event('change'));
        });
        await expectContactStatus(pages.alice, BOB, 'away');
        await b.mouse.move(200, 300);
        await expectContactStatus(pages.alice, BOB, 'online');
        await b.getByTestId('away-after').selectOption('300');
        await b.getByRole('button', { name: 'Settings' }).click();
    }],

    ['alice loses the network and gets it back: the status says so, and nothing is lost', async () => {
        const a = pages.alice;
        await a.context().setOffline(true);
        await a.getByTestId('connection-status').filter({ hasText: 'Offline' }).waitFor();
        await send(pages.bob, 'Sent while you were offline');
        await a.context().setOffline(false);
        await expectOnline(a);
        await a.locator('.msg.in .body').filter({ hasText: 'Sent while you were offline' }).waitFor();
    }],

    ['the server restarts: both reconnect by themselves and chat goes on', async () => {
        const a = pages.alice;
        const b = pages.bob;
        await restartServer();
        await a.getByTestId('connection-status').filter({ hasText: 'Reconnecting' }).waitFor();
        await shot(a, '10-alice-reconnecting');
        await expectOnline(a);
        await expectOnline(b);
        await expectContactStatus(a, BOB, 'online');
        await expectContactStatus(b, ALICE, 'away');
        await send(a, 'Still there after the restart?');
        await b.locator('.msg.in .body').filter({ hasText: 'Still there after the restart?' }).waitFor();
        // The conversation from before the restart is still on screen.
        await b.locator('.msg.in .body').filter({ hasText: `Hello ${BOB_NAME}!` }).waitFor();
    }],

    ['while the server is down, alice writes anyway: the message waits, and "Reconnect now" sends it', async () => {
        const a = pages.alice;
        await contact(a, BOB).click();
        await stopServer();
        await a.getByTestId('connection-status').filter({ hasText: /Reconnecting|Offline/ }).waitFor();
        const text = 'Written while the server was down';
        await send(a, text);
        const mine = a.locator('.msg.out').filter({ hasText: text });
        await mine.getByRole('img', { name: 'waiting to send', exact: true }).waitFor();
        // A draft of the next one is kept in the composer meanwhile.
        await a.getByTestId('composer').fill('half-written draft');
        // Between two rounds of attempts (a wait of 4 s or more), so that no round is under
        // way when the server comes back: one could then find WebSocket refused and BOSH
        // answering, and rightly stay on BOSH.
        await a.getByTestId('connection-status').filter({ hasText: /Reconnecting in ([4-9]|[1-9]\d)s/ }).waitFor();
        startServer();
        await serverListening();
        // Without waiting for the backoff (it may be up to 30 s by now). Should an attempt
        // of its own have got through first, the button is gone, and that is fine too.
        await a.getByTestId('reconnect-now').click({ timeout: 5000 }).catch(async (e) => {
            if (!(await a.getByTestId('connection-status').filter({ hasText: 'Online' }).count())) throw e;
        });
        await expectOnline(a);
        await mine.getByRole('img', { name: /^(sent|delivered)$/ }).waitFor();
        await pages.bob.locator('.msg.in .body').filter({ hasText: text }).waitFor();
        await expectOnline(pages.bob);
        if ((await a.getByTestId('composer').inputValue()) !== 'half-written draft') throw new Error('the draft was lost');
    }],

    ['a draft survives a reload', async () => {
        const a = pages.alice;
        await reloadHeld(a, async () => {});
        await expectOnline(a);
        await a.getByTestId('chat-title').filter({ hasText: BOB_NAME }).waitFor();
        await a.waitForFunction(() => document.querySelector('[data-testid=composer]').value === 'half-written draft');
        await a.getByTestId('composer').fill('');
    }],

    ['a phone-sized screen shows one pane at a time', async () => {
        const b = pages.bob;
        await b.setViewportSize({ width: 360, height: 740 });
        await b.locator('.msg.in .body').filter({ hasText: `Thanks, ${BOB_NAME}.` }).waitFor();
        await shot(b, '11-bob-phone-chat');
        await b.getByRole('button', { name: 'Back to contacts' }).click();
        await contact(b, ALICE).waitFor();
        await shot(b, '12-bob-phone-contacts');
        await b.setViewportSize({ width: 1280, height: 800 });
    }],

    ['bob reloads the page while alice writes: the session resumes, without signing in and without loss', async () => {
        const a = pages.alice;
        const b = pages.bob;
        await contact(b, ALICE).click();
        await b.locator('.msg.in .body').filter({ hasText: 'Still there after the restart?' }).waitFor();
        const text = 'Written while you reloaded';
        await reloadHeld(b, async () => {
            // The page went away: it left its session state in sessionStorage, without the password.
            const saved = await b.evaluate(() => sessionStorage.getItem('jabberwock.resume'));
            if (!saved || !saved.includes('"sm"')) throw new Error(`no saved session: ${saved}`);
            if (saved.includes(must('E2E_PASSWORD_B'))) throw new Error('the password was saved');
            // The server issues FAST tokens: the token is kept, the SCRAM keys are not.
            const parsed = JSON.parse(saved);
            if (!parsed.token) throw new Error(`no FAST token saved: ${saved}`);
            if (parsed.keys) throw new Error('the SCRAM keys were saved');
            await send(a, text);
            await a.locator('.msg.out .body').filter({ hasText: text }).waitFor();
        });
        await expectOnline(b);
        if (await b.getByRole('heading', { name: 'Sign in to chat' }).count()) throw new Error('the sign-in form was shown');
        // The open conversation is back, with what arrived meanwhile and what came before.
        await b.getByTestId('chat-title').filter({ hasText: ALICE_NAME }).waitFor();
        await b.locator('.msg.in .body').filter({ hasText: text }).waitFor();
        await b.locator('.msg.in .body').filter({ hasText: `Hello ${BOB_NAME}!` }).waitFor();
        await b.locator('.msg.out .body').filter({ hasText: `Hi ${ALICE_NAME}!` }).waitFor();
        await expectContactStatus(b, ALICE, 'away');
        const shown = await b.locator('.msg .body').count();
        if (shown !== 8) throw new Error(`expected the 8 messages once each, found ${shown}`);
        await shot(b, '13-bob-resumed-after-reload');
    }],

    ['when the session cannot be resumed, the page signs in again with its FAST token, without loss', async () => {
        const b = pages.bob;
        await reloadHeld(b, () => b.evaluate(() => {
            // As if the server had restarted: the saved session is gone, the token is good.
            const saved = JSON.parse(sessionStorage.getItem('jabberwock.resume'));
            saved.sm.id = 'gone';
            sessionStorage.setItem('jabberwock.resume', JSON.stringify(saved));
        }));
        await expectOnline(b);
        if (await b.getByRole('heading', { name: 'Sign in to chat' }).count()) throw new Error('the sign-in form was shown');
        await b.getByTestId('chat-title').filter({ hasText: ALICE_NAME }).waitFor();
        // A new session: the conversation comes back from the archive, each message once.
        await b.locator('.msg.in .body').filter({ hasText: 'Written while you reloaded' }).waitFor();
        await b.locator('.msg.in .body').filter({ hasText: `Hello ${BOB_NAME}!` }).waitFor();
        const shown = await b.locator('.msg .body').count();
        if (shown !== 8) throw new Error(`expected the 8 messages once each, found ${shown}`);
    }],

    ['when the token is refused too, the sign-in form comes back with the address filled in', async () => {
        const b = pages.bob;
        await reloadHeld(b, () => b.evaluate(() => {
            const saved = JSON.parse(sessionStorage.getItem('jabberwock.resume'));
            saved.sm.id = 'gone';
            saved.token.token = 'not-a-token-the-server-issued';
            sessionStorage.setItem('jabberwock.resume', JSON.stringify(saved));
        }));
        await b.getByRole('heading', { name: 'Sign in to chat' }).waitFor();
        await b.getByTestId('login-error').filter({ hasText: 'sign in again' }).waitFor();
        const address = await b.getByLabel('Address', { exact: true }).inputValue();
        if (address !== BOB) throw new Error(`the address was not filled in: ${address}`);
        if (await b.getByLabel('Password', { exact: true }).inputValue()) throw new Error('the password was kept');
        // The address is known: the password field has the focus.
        if (!(await b.getByLabel('Password', { exact: true }).evaluate((el) => el === document.activeElement))) {
            throw new Error('the password field does not have the focus');
        }
        await b.getByLabel('Password', { exact: true }).fill(must('E2E_PASSWORD_B'));
        await b.getByRole('button', { name: 'Sign in' }).click();
        await expectOnline(b);
        await contact(b, ALICE).click();
        await b.locator('.msg.in .body').filter({ hasText: 'Written while you reloaded' }).waitFor();
        await b.locator('.msg.in .body').filter({ hasText: `Hello ${BOB_NAME}!` }).waitFor();
        const shown = await b.locator('.msg .body').count();
        if (shown !== 8) throw new Error(`expected the 8 messages once each, found ${shown}`);
    }],

    ['a stranger writes to bob without adding him: bob can add or block, and blocks', async () => {
        const c = await openPage('stranger');
        await login(c, STRANGER, must('E2E_PASSWORD_C'));
        await expectOnline(c);
        await c.getByRole('button', { name: 'Add contact' }).click();
        await c.getByLabel('Their address').fill(BOB);
        await c.getByRole('button', { name: 'Message', exact: true }).click();
        await send(c, 'Hello from someone you do not know');
        const b = pages.bob;
        await contact(b, STRANGER).click();
        await b.locator('.msg.in .body').filter({ hasText: 'Hello from someone you do not know' }).waitFor();
        // Not a contact: "Add" and "Block", no "Remove".
        await b.locator('.chat-actions').getByRole('button', { name: 'Add', exact: true }).waitFor();
        if (await b.locator('.chat-actions').getByRole('button', { name: 'Remove' }).count()) throw new Error('"Remove" for a stranger');
        await shot(b, '17-bob-stranger');
        await b.locator('.chat-actions').getByRole('button', { name: 'Block', exact: true }).click();
        await b.getByTestId('chat-status').filter({ hasText: 'Blocked' }).waitFor();
        // The server refuses what they send now, and says so to them.
        await send(c, 'Are you ignoring me?');
        await c.locator('.msg.out').filter({ hasText: 'Are you ignoring me?' }).getByRole('img', { name: 'not delivered' }).waitFor();
        if (await b.locator('.msg.in .body').filter({ hasText: 'Are you ignoring me?' }).count()) throw new Error('a blocked message arrived');
        // The block list is in Settings, where it can be undone; Escape closes the menu.
        await b.getByRole('button', { name: 'Settings' }).click();
        await b.getByTestId('block-list').getByText(STRANGER).waitFor();
        await shot(b, '18-bob-block-list');
        await b.getByRole('button', { name: `Unblock ${STRANGER}` }).click();
        await b.getByTestId('block-list').waitFor({ state: 'detached' });
        await b.keyboard.press('Escape');
        await b.locator('#settings-panel').waitFor({ state: 'detached' });
        await c.context().close();
        delete pages.stranger;
    }],

    ['messages that arrive in another conversation are counted across a reload, open at a "New messages" line, and put that conversation first', async () => {
        const a = pages.alice;
        const b = pages.bob;
        await contact(b, STRANGER).click();
        await send(a, 'First of two while you look elsewhere');
        await send(a, 'Second of two');
        await contact(b, ALICE).locator('.badge').filter({ hasText: '2' }).waitFor();
        const firstRow = await b.locator('.contact').first().getAttribute('data-jid');
        if (firstRow !== ALICE) throw new Error(`the most recent conversation is not first: ${firstRow}`);
        // A reload keeps the count (and the line comes once the archive brings the messages).
        await reloadHeld(b, async () => {});
        await expectOnline(b);
        await contact(b, ALICE).locator('.badge').filter({ hasText: '2' }).waitFor();
        await contact(b, ALICE).click();
        const line = b.getByTestId('new-messages');
        await line.waitFor();
        // The line sits right above the first of the two.
        const next = await line.evaluate((el) => el.nextElementSibling?.textContent || '');
        if (!next.includes('First of two')) throw new Error(`the line is above: ${next}`);
        await shot(b, '19-bob-new-messages-line');
    }],

    ['alice writes from a second session: her first one shows it as her own (carbons)', async () => {
        const a = pages.alice;
        await contact(a, BOB).click();
        const a2 = await openPage('alice2');
        await login(a2, ALICE, must('E2E_PASSWORD_A'));
        await expectOnline(a2);
        await contact(a2, BOB).click();
        const text = 'Written on my other device';
        await send(a2, text);
        // The first session shows it as sent by alice, in the conversation with bob.
        await a.locator('.msg.out .body').filter({ hasText: text }).waitFor();
        if ((await a.locator('.msg.in .body').filter({ hasText: text }).count()) !== 0) throw new Error('the copy was shown as incoming');
        await pages.bob.locator('.msg.in .body').filter({ hasText: text }).waitFor();
        // bob's receipt goes to the session that sent it, and a copy to the first one.
        for (const p of [a2, a]) {
            await p.locator('.msg.out').filter({ hasText: text }).getByRole('img', { name: 'delivered', exact: true }).waitFor();
        }
        await shot(a, '14-alice-carbon-from-second-session');
        // bob answers: both of alice's sessions show it (one directly, one as a copy).
        await send(pages.bob, 'Got it on both?');
        await a.locator('.msg.in .body').filter({ hasText: 'Got it on both?' }).waitFor();
        await a2.locator('.msg.in .body').filter({ hasText: 'Got it on both?' }).waitFor();
        await a2.getByRole('button', { name: 'Sign out' }).click();
        await a2.getByRole('heading', { name: 'Sign in to chat' }).waitFor();
        await a2.context().close();
        delete pages.alice2;
    }],

    ['the widget on another site mounts the client and signs in', async () => {
        // Another site (its own origin) with a page that embeds the widget.
        const site = http.createServer((req, res) => {
            res.writeHead(200, { 'content-type': 'text/html' });
            res.end(`<!doctype html><html><head><title>Example shop</title></head>
                <body style="font-family: sans-serif; margin: 0; padding: 32px; background: #fafafa">
                <h1>Example shop</h1><p>Questions? Chat with us.</p>
                <div id="chat" style="width: 380px; height: 600px; border: 1px solid #ddd; border-radius: 16px"
                     data-jabberwock data-domain="${DOMAIN}" data-jid="${ALICE}" data-theme="light"></div>
                <script src="${BASE}/widget.js" async></script></body></html>`);
        });
        await new Promise((r) => site.listen(0, '127.0.0.1', r));
        const host = await openPage('widget-host');
        await host.goto(`http://127.0.0.1:${site.address().port}/`, { waitUntil: 'load' });
        const chat = host.frameLocator('#chat iframe');
        await chat.getByRole('heading', { name: 'Sign in to chat' }).waitFor();
        const address = await chat.getByLabel('Address', { exact: true }).inputValue();
        if (address !== ALICE) throw new Error(`the widget's address was not prefilled: ${address}`);
        await chat.getByLabel('Password', { exact: true }).fill(must('E2E_PASSWORD_A'));
        await chat.getByRole('button', { name: 'Sign in' }).click();
        await chat.getByTestId('connection-status').filter({ hasText: 'Online' }).waitFor();
        await chat.locator(`.contact[data-jid="${BOB}"]`).waitFor();
        await shot(host, '15-widget-on-another-site');
        await chat.getByRole('button', { name: 'Sign out' }).click();
        await chat.getByRole('heading', { name: 'Sign in to chat' }).waitFor();
        await host.context().close();
        delete pages['widget-host'];
        site.close();
    }],

    ['a link naming another server is not used, and the form shows where the sign-in goes', async () => {
        const p = await openPage('link');
        const foreign = 'wss://chat.evil.example/xmpp-websocket';
        await p.goto(`${BASE}/?domain=${DOMAIN}&endpoint=${encodeURIComponent(foreign)}`, { waitUntil: 'load' });
        await p.getByTestId('ignored-server').filter({ hasText: foreign }).waitFor();
        // An address without "@" is completed with the link's domain, and the form says so.
        await p.getByLabel('Address', { exact: true }).fill('alice');
        await p.getByTestId('login-server').filter({ hasText: `found from ${DOMAIN}` }).waitFor();
        if ((await p.getByLabel('Server URL').inputValue()) !== '') throw new Error("the link's server was filled in");
        await shot(p, '16-link-to-another-server');
        // A link to this site's own endpoint is taken, and shown.
        const own = `${BASE.replace(/^http/, 'ws')}/xmpp-websocket`;
        await p.goto(`${BASE}/?endpoint=${encodeURIComponent(own)}`, { waitUntil: 'load' });
        await p.getByTestId('login-server').filter({ hasText: own }).waitFor();
        if (await p.getByTestId('ignored-server').count()) throw new Error("this site's own endpoint was refused");
        await p.context().close();
        delete pages.link;
        // The Content-Security-Policy let everything so far run (the BOSH run's unreachable
        // WebSocket endpoint is on another port, which the policy forbids on purpose).
        if (TRANSPORT === 'websocket') {
            const refused = Object.values(logs).flat().filter((l) => l.includes('Content Security Policy'));
            if (refused.length) throw new Error(`the policy refused something: ${refused.join('; ')}`);
        }
    }],

    ['alice changes her password in Settings', async () => {
        const a = pages.alice;
        await a.getByRole('button', { name: 'Settings' }).click();
        await a.getByRole('button', { name: 'Change password' }).click();
        await a.getByLabel('New password', { exact: true }).fill('short');
        await a.getByLabel('New password again').fill('short');
        await a.getByRole('button', { name: 'Change', exact: true }).click();
        await a.getByRole('alert').filter({ hasText: 'at least 8 characters' }).waitFor();
        await a.getByLabel('New password', { exact: true }).fill(NEW_PASSWORD_A);
        await a.getByLabel('New password again').fill(NEW_PASSWORD_A);
        await a.getByRole('button', { name: 'Change', exact: true }).click();
        await a.getByText('Your password was changed').waitFor();
        // A click outside closes the menu.
        await a.mouse.click(640, 500);
        await a.locator('#settings-panel').waitFor({ state: 'detached' });
    }],

    ['a new user creates an account from the sign-in page', async () => {
        const p = await openPage('newcomer');
        await p.goto(BASE, { waitUntil: 'load' });
        await p.getByRole('button', { name: 'Create an account' }).click();
        await p.getByRole('heading', { name: 'Create an account' }).waitFor();
        const address = `newcomer-${TRANSPORT}@${DOMAIN}`;
        await p.getByLabel('Address', { exact: true }).fill(address);
        await p.getByLabel('Password', { exact: true }).fill('a long new password');
        await p.getByLabel('Password again').fill('a different one');
        await p.getByRole('button', { name: 'Create account' }).click();
        await p.getByTestId('login-error').filter({ hasText: 'differ' }).waitFor();
        await p.getByLabel('Password again').fill('a long new password');
        await p.getByRole('button', { name: 'Create account' }).click();
        await expectOnline(p);
        await p.getByText('No contacts yet').waitFor();
        await shot(p, '21-new-account');
        await p.getByRole('button', { name: 'Sign out' }).click();
        // The address is now taken.
        await p.getByRole('button', { name: 'Create an account' }).click();
        await p.getByLabel('Address', { exact: true }).fill(address);
        await p.getByLabel('Password', { exact: true }).fill('a long new password');
        await p.getByLabel('Password again').fill('a long new password');
        await p.getByRole('button', { name: 'Create account' }).click();
        await p.getByTestId('login-error').filter({ hasText: 'taken' }).waitFor();
        await p.context().close();
        delete pages.newcomer;
    }],

    ['the client installs as an app, starts without a network, and shows the conversations it has seen', async () => {
        const p = await openPage('app', { serviceWorkers: 'allow' });
        await p.goto(BASE, { waitUntil: 'load' });
        await p.getByRole('heading', { name: 'Sign in to chat' }).waitFor();
        // The address field has the focus on a first visit.
        if (!(await p.getByLabel('Address', { exact: true }).evaluate((el) => el === document.activeElement))) {
            throw new Error('the address field does not have the focus');
        }
        const manifest = await p.evaluate(async () => {
            const link = document.querySelector('link[rel=manifest]');
            const response = await fetch(link.href);
            return { type: response.headers.get('content-type'), body: await response.json() };
        });
        if (manifest.type !== 'application/manifest+json') throw new Error(`manifest served as ${manifest.type}`);
        if (manifest.body.display !== 'standalone' || !manifest.body.icons.some((i) => i.sizes === '512x512')) {
            throw new Error(`manifest: ${JSON.stringify(manifest.body)}`);
        }
        await p.evaluate(() => navigator.serviceWorker.ready);
        // The page, its script and WebAssembly come from the kept copy once offline.
        await p.reload({ waitUntil: 'load' });
        // Started, so the WebAssembly (fetched by the script, after `load`) is kept too.
        await p.getByRole('heading', { name: 'Sign in to chat' }).waitFor();
        await p.context().setOffline(true);
        await p.reload({ waitUntil: 'load' });
        await p.getByRole('heading', { name: 'Sign in to chat' }).waitFor();
        await shot(p, '20-started-offline');
        await p.context().setOffline(false);

        // Alice on this device: a conversation with bob, then the network goes and the page
        // is reloaded. The page, the contacts and the conversation come from the browser.
        await login(p, ALICE, NEW_PASSWORD_A);
        const status = p.getByTestId('connection-status');
        await status.filter({ hasText: 'Online' }).waitFor();
        await contact(p, BOB).click();
        const mine = 'Kept by this browser';
        await send(p, mine);
        const b = pages.bob;
        await contact(b, ALICE).click();
        await b.locator('.msg.in .body').filter({ hasText: mine }).waitFor();
        const answer = 'Readable without a network';
        await send(b, answer);
        await p.locator('.msg.in .body').filter({ hasText: answer }).waitFor();
        const shown = await p.locator('.msg .body').count();
        await p.context().setOffline(true);
        await p.reload({ waitUntil: 'load' });
        await status.filter({ hasText: 'Offline' }).waitFor();
        await p.getByTestId('chat-title').filter({ hasText: BOB_NAME }).waitFor();
        await p.locator('.msg.out .body').filter({ hasText: mine }).waitFor();
        await p.locator('.msg.in .body').filter({ hasText: answer }).waitFor();
        await contact(p, BOB).waitFor();
        await shot(p, '20-conversation-read-offline');
        // The network is back: the session resumes, and the archive's newest page, asked
        // for again, shows nothing twice.
        await p.context().setOffline(false);
        await status.filter({ hasText: 'Online' }).waitFor();
        await p.waitForTimeout(1500);
        const again = await p.locator('.msg .body').count();
        if (again !== shown) throw new Error(`${shown} messages before going offline, ${again} after`);
        // Signing out forgets what the browser kept.
        await p.getByRole('button', { name: 'Sign out' }).click();
        await p.getByRole('heading', { name: 'Sign in to chat' }).waitFor();
        const kept = await p.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith('jabberwock.kept.')));
        if (kept.length) throw new Error(`still kept after signing out: ${kept}`);
        await p.context().close();
        delete pages.app;
    }],

    ['signing out returns to the sign-in form', async () => {
        const a = pages.alice;
        await a.getByRole('button', { name: 'Sign out' }).click();
        await a.getByRole('heading', { name: 'Sign in to chat' }).waitFor();
        await a.getByTestId('connection-status').filter({ hasText: 'Signed out' }).waitFor();
        // bob sees alice go offline.
        await expectContactStatus(pages.bob, ALICE, 'offline');
    }],

    ['alice signs in with her new password, and no longer with the old one', async () => {
        const a = pages.alice;
        await login(a, ALICE, must('E2E_PASSWORD_A'));
        await a.getByTestId('login-error').filter({ hasText: /wrong address or password/i }).waitFor();
        await a.getByLabel('Password', { exact: true }).fill(NEW_PASSWORD_A);
        await a.getByRole('button', { name: 'Sign in' }).click();
        await expectOnline(a);
        await expectContactStatus(pages.bob, ALICE, 'online');
    }],
];

await runSteps('web', steps);
