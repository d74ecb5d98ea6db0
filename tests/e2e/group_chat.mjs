// Group chats in the web client, end to end: three users in headless Chromium against a
// running Jabberwock server (its MUC service, conference.<domain>).
//
// A creates a room and bookmarks it (autojoin), B finds it among the public rooms and
// joins, A invites C, who accepts; messages go both ways, a mention of B's nick is
// highlighted and notifies B's background tab (other room messages do not); A writes
// privately to B, and kicks C, who is told. B reloads and is still in the room; A signs in
// again and is back in it from the bookmark (autojoin); both read the history from the
// room's archive with nothing twice. Then a new subject and a nick change. The owner's
// settings form and the room view are checked for labels and keyboard reach.
//
// Environment (set by run.sh): E2E_BASE_URL, E2E_DOMAIN, E2E_TRANSPORT (websocket or
// bosh), E2E_DEAD_PORT (bosh), E2E_USERS (three localparts, comma-separated),
// E2E_PASSWORDS (theirs, in order), E2E_ARTIFACTS, CHROMIUM_BIN, E2E_DEBUG.

import { BASE, DOMAIN, TRANSPORT, expectOnline as online, must, newContext, newPage, pages, runSteps, shot as shotAs, signIn as signInAs } from './lib.mjs';

const [A, B, C] = must('E2E_USERS').split(',');
const PASSWORDS = Object.fromEntries(must('E2E_PASSWORDS').split(',').map((p, i) => [[A, B, C][i], p]));
const ROOM = `team-${TRANSPORT}@conference.${DOMAIN}`;
const ROOM_NAME = `team-${TRANSPORT}`;

/** A fresh browser profile for `user`, signed in and online. */
async function signIn(user) {
    const page = await newPage(await newContext(), user);
    await signInAs(page, `${user}@${DOMAIN}`, PASSWORDS[user]);
    return page;
}

/** A screenshot named `room-<name>` (see lib.mjs's). */
const shot = (page, name) => shotAs(page, `room-${name}`);

function occupant(page, nick) {
    return page.locator(`[data-testid="occupants"] .occupant[data-nick="${nick}"]`);
}

function message(page, text) {
    return page.getByTestId('room-message').filter({ hasText: text });
}

async function say_in_room(page, text) {
    const box = page.getByTestId('room-composer');
    await box.fill(text);
    await box.press('Enter');
}

/** Opens the actions menu of `msg` from the keyboard: focus the message, then its button. */
async function openMenu(msg) {
    await msg.focus();
    await msg.getByTestId('message-menu').press('Enter');
    await msg.getByRole('menu').waitFor();
}

/** The texts of the room's messages, in order. */
async function texts(page) {
    return page.getByTestId('room-message').locator('.body').allInnerTexts();
}

/** Every control in `scope` must have an accessible name (a label, aria-label or text). */
async function expectLabelled(page, scope) {
    const unnamed = await page.locator(scope).evaluate((root) => [...root.querySelectorAll('button, input, select, textarea')]
        .filter((el) => el.type !== 'hidden')
        // Hidden from assistive technology on purpose (the file input behind its button).
        .filter((el) => !el.closest('[aria-hidden="true"]'))
        .filter((el) => !(el.getAttribute('aria-label') || el.labels?.length || el.textContent.trim() || el.title))
        .map((el) => el.outerHTML.slice(0, 120)));
    if (unnamed.length) throw new Error(`controls without a name in ${scope}: ${unnamed.join(' | ')}`);
}

/**
 * Runs `away` (a reload, signing in again) on `page`, then opens the room once it is
 * joined again and checks it shows the same messages as before, from the room's archive.
 */
async function backInTheRoom(page, away) {
    const before = await texts(page);
    await away(page);
    const row = page.locator(`[data-testid="room-row"][data-room="${ROOM}"]`);
    await page.waitForFunction((room) => {
        const sub = document.querySelector(`[data-testid="room-row"][data-room="${room}"] .contact-sub`);
        return sub && sub.textContent === room;
    }, ROOM);
    await row.click();
    await message(page, 'can you look at this?').waitFor();
    const after = await texts(page);
    if (JSON.stringify(after) !== JSON.stringify(before)) {
        throw new Error(`the history differs:\n  before ${JSON.stringify(before)}\n  after  ${JSON.stringify(after)}`);
    }
}

const steps = [
    [`${A} creates ${ROOM_NAME} and bookmarks it with autojoin`, async () => {
        const a = await signIn(A);
        await a.getByTestId('join-room-open').click();
        await a.getByTestId('room-address').fill(ROOM);
        await a.getByTestId('room-create').check();
        await a.getByLabel('Name (optional)').fill('The team');
        await shot(a, '01-create-dialog');
        await a.getByTestId('room-join').click();
        await a.getByTestId('room-subject').filter({ hasText: ROOM }).waitFor();
        // The name set on creation, which the room's disco#info gives back.
        await a.getByTestId('room-title').filter({ hasText: 'The team' }).waitFor();
        await occupant(a, A).waitFor();
        if ((await occupant(a, A).getAttribute('data-role')) !== 'moderator') throw new Error('the creator is not a moderator');
        await a.getByTestId('room-bookmark').click();
        await a.locator('[data-testid="room-bookmark"][aria-pressed="true"]').waitFor();
    }],

    [`${B} finds the room among the public ones, joins, and both see each other`, async () => {
        const b = await signIn(B);
        await b.getByTestId('join-room-open').click();
        // The server's group chat service is found (disco#items, then disco#info), then listed.
        const browse = b.getByRole('button', { name: 'Browse public rooms' });
        await b.waitForFunction(() => !document.querySelector('.public-rooms button').disabled);
        await browse.click();
        await b.getByRole('list', { name: 'Public rooms' }).getByRole('button', { name: /The team/ }).filter({ hasText: ROOM }).click();
        if ((await b.getByTestId('room-address').inputValue()) !== ROOM) throw new Error('picking the room did not fill its address');
        await b.getByTestId('room-join').click();
        await b.getByTestId('room-subject').filter({ hasText: ROOM }).waitFor();
        await b.getByTestId('room-title').filter({ hasText: 'The team' }).waitFor();
        await occupant(b, A).waitFor();
        await occupant(pages[A], B).waitFor();
    }],

    [`${A} invites ${C}, who accepts`, async () => {
        const c = await signIn(C);
        const a = pages[A];
        await a.getByTestId('room-menu').click();
        await a.getByTestId('room-invite').click();
        await a.getByTestId('room-action-input').fill(`${C}@${DOMAIN}`);
        await a.getByTestId('room-action-input').press('Enter');
        const invitation = c.getByTestId('invitation').filter({ hasText: ROOM });
        await invitation.waitFor();
        await invitation.getByRole('button', { name: 'Join' }).click();
        await c.getByTestId('room-subject').filter({ hasText: ROOM }).waitFor();
        await occupant(a, C).waitFor();
    }],

    ['messages go both ways, each shown once', async () => {
        const [a, b, c] = [pages[A], pages[B], pages[C]];
        await say_in_room(a, 'Hello, team');
        await message(b, 'Hello, team').waitFor();
        await message(c, 'Hello, team').waitFor();
        await say_in_room(b, 'Hi! Glad to be here');
        await message(a, 'Hi! Glad to be here').waitFor();
        // Ours comes back from the room (its reflection) and is marked so, not shown twice.
        await a.locator('[data-testid="room-message"].out .tick.delivered').first().waitFor();
        const seen = await texts(a);
        if (seen.filter((t) => t === 'Hello, team').length !== 1) throw new Error(`twice: ${JSON.stringify(seen)}`);
    }],

    [`a mention of ${B} is highlighted and notifies ${B}'s background tab; other messages do not`, async () => {
        const b = pages[B];
        await b.context().grantPermissions(['notifications'], { origin: new URL(BASE).origin });
        await b.getByRole('button', { name: 'Settings' }).click();
        await b.getByLabel('Desktop notifications').check();
        await b.getByRole('button', { name: 'Settings' }).click();
        await b.evaluate(() => {
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
        await say_in_room(pages[C], 'Just chatting');
        await message(b, 'Just chatting').waitFor();
        await say_in_room(pages[A], `${B}: can you look at this?`);
        await b.locator('[data-testid="room-message"][data-mention="true"]').filter({ hasText: 'can you look at this?' }).waitFor();
        await b.waitForFunction(() => window.shown.length >= 1);
        const shown = await b.evaluate(() => window.shown);
        if (shown.length !== 1 || !shown[0].body.includes('can you look at this?') || !shown[0].title.includes(A)) {
            throw new Error(`notifications: ${JSON.stringify(shown)}`);
        }
        // Unread while hidden, with the mention marked in the room list and counted in the title.
        await b.locator(`[data-testid="room-row"][data-room="${ROOM}"].mentioned`).waitFor();
        await b.waitForFunction(() => document.title === '(1) Jabberwock');
        await shot(b, '02-mention');
        // Back to the tab, with the room open: read.
        await b.evaluate(() => {
            delete document.visibilityState;
            document.dispatchEvent(new Event('visibilitychange'));
        });
        await b.locator(`[data-testid="room-row"][data-room="${ROOM}"]:not(.mentioned)`).waitFor();
        await b.waitForFunction(() => document.title === 'Jabberwock');
    }],

    ['the owner edits the settings form, rendered from the room\'s data form', async () => {
        const a = pages[A];
        await a.getByTestId('room-menu').click();
        await a.getByTestId('room-settings').click();
        const form = a.getByTestId('room-config');
        await form.waitFor();
        await form.getByRole('checkbox').first().waitFor();
        await expectLabelled(a, '[data-testid="room-config"]');
        await shot(a, '03-settings');
        await form.getByRole('button', { name: 'Cancel' }).click();
        await form.waitFor({ state: 'detached' });
    }],

    [`${A} writes privately to ${B} from the occupant list`, async () => {
        const [a, b] = [pages[A], pages[B]];
        await occupant(a, B).locator('.occupant-name').click();
        await occupant(a, B).getByRole('button', { name: 'Private message' }).click();
        const box = a.getByTestId('composer');
        await box.fill('Just between us');
        await box.press('Enter');
        // A conversation with the occupant, apart from the room.
        const row = b.locator(`.contact[data-jid="${ROOM}/${A}"]`);
        await row.filter({ hasText: `${A} (The team)` }).waitFor();
        await row.click();
        await b.getByTestId('message-log').filter({ hasText: 'Just between us' }).waitFor();
        await a.locator(`[data-testid="room-row"][data-room="${ROOM}"]`).click();
        await b.locator(`[data-testid="room-row"][data-room="${ROOM}"]`).click();
        await message(b, 'can you look at this?').waitFor();
        if (await message(b, 'Just between us').count()) throw new Error('the private message shows in the room');
    }],

    [`${A} kicks ${C}, who is told why they are out, and comes back under another nick`, async () => {
        const [a, c] = [pages[A], pages[C]];
        await occupant(a, C).locator('.occupant-name').click();
        await occupant(a, C).getByRole('button', { name: 'Kick' }).click();
        await occupant(a, C).waitFor({ state: 'detached' });
        await c.getByTestId('room-problem').filter({ hasText: 'You were kicked from the room' }).waitFor();
        await c.locator(`[data-testid="room-row"][data-room="${ROOM}"] .contact-sub.problem`).waitFor();
        if (!(await c.getByTestId('room-composer').getAttribute('placeholder')).includes('Not in the room')) {
            throw new Error('the composer still offers to write to the room');
        }
        // A kick is not a ban: back in, under another nick.
        await c.getByRole('form', { name: 'Join again' }).getByLabel('Nickname').fill(`${C}-back`);
        await c.getByTestId('room-join-again').click();
        await c.getByTestId('room-problem').waitFor({ state: 'detached' });
        await occupant(a, `${C}-back`).waitFor();
    }],

    ['the room view is labelled and reachable from the keyboard', async () => {
        const a = pages[A];
        await expectLabelled(a, '[data-testid="room-view"]');
        await expectLabelled(a, '.rooms');
        // Tab from the composer reaches the send button; the room menu opens with Enter.
        await a.getByTestId('room-menu').focus();
        await a.keyboard.press('Enter');
        await a.getByTestId('room-leave').waitFor();
        await a.keyboard.press('Escape');
        await a.getByTestId('room-leave').focus();
        await a.keyboard.press('Escape');
        await a.getByTestId('room-leave').waitFor({ state: 'detached' });
        await shot(a, '04-room-view');
    }],

    [`${B} reloads: still in the room, with the history from the archive and nothing twice`, async () => {
        await backInTheRoom(pages[B], async (page) => {
            await page.reload({ waitUntil: 'load' });
            await online(page);
        });
    }],

    [`${A} signs out and in again: the bookmarked room is joined on sign-in, history without duplicates`, async () => {
        await backInTheRoom(pages[A], async (page) => {
            await page.getByRole('button', { name: 'Sign out' }).click();
            await page.getByRole('heading', { name: 'Sign in to chat' }).waitFor();
            await page.getByLabel('Address', { exact: true }).fill(`${A}@${DOMAIN}`);
            await page.getByLabel('Password', { exact: true }).fill(PASSWORDS[A]);
            await page.getByRole('button', { name: 'Sign in' }).click();
            await online(page);
        });
    }],

    ['on a phone, the occupants take the place of the messages on request', async () => {
        const b = pages[B];
        await b.setViewportSize({ width: 390, height: 760 });
        const toggle = b.getByRole('button', { name: 'People' });
        if (await b.getByTestId('occupants').isVisible()) throw new Error('the occupants crowd the phone layout');
        await toggle.click();
        await b.getByTestId('occupants').waitFor({ state: 'visible' });
        await shot(b, '05-phone-occupants');
        await toggle.click();
        await b.getByTestId('room-log').waitFor({ state: 'visible' });
        await b.setViewportSize({ width: 1280, height: 800 });
    }],

    ['the subject and a nick change reach everyone', async () => {
        const [a, b] = [pages[A], pages[B]];
        await a.getByTestId('room-menu').click();
        await a.getByRole('button', { name: 'Change subject…' }).click();
        await a.getByTestId('room-action-input').fill('Plans for Friday');
        await a.getByTestId('room-action-input').press('Enter');
        await b.getByTestId('room-subject').filter({ hasText: 'Plans for Friday' }).waitFor();
        await b.getByTestId('room-menu').click();
        await b.getByRole('button', { name: 'Change nickname…' }).click();
        await b.getByTestId('room-action-input').fill(`${B}-2`);
        await b.getByTestId('room-action-input').press('Enter');
        await occupant(a, `${B}-2`).waitFor();
        await occupant(a, B).waitFor({ state: 'detached' });
        await say_in_room(b, 'Same me, new name');
        await message(a, 'Same me, new name').waitFor();
    }],

    ['message actions in the room: a reaction, a correction and a reply show on the other side', async () => {
        const [a, b] = [pages[A], pages[B]];
        await say_in_room(b, 'Pizza at noon?');
        // Reactions name the room's id for the message: the menu waits for it.
        const theirs = message(a, 'Pizza at noon?');
        await openMenu(theirs);
        await theirs.getByRole('menuitem', { name: 'React with 👍' }).click();
        await message(b, 'Pizza at noon?').getByTestId('reactions').filter({ hasText: '👍' }).waitFor();
        const box = b.getByTestId('room-composer');
        await box.focus();
        await box.press('ArrowUp');
        await b.getByTestId('composer-banner').filter({ hasText: 'Editing' }).waitFor();
        await box.fill('Pizza at one?');
        await box.press('Enter');
        const edited = message(a, 'Pizza at one?');
        await edited.locator('.edited').waitFor();
        await edited.getByTestId('reactions').waitFor();
        if ((await message(a, 'Pizza at noon?').count()) !== 0) throw new Error('the original stayed');
        await openMenu(edited);
        await edited.getByRole('menuitem', { name: 'Reply' }).click();
        await say_in_room(a, 'Works for me');
        await message(b, 'Works for me').getByTestId('reply-quote').filter({ hasText: 'Pizza at one?' }).waitFor();
    }],

    [`${A}, a moderator, removes ${C}'s message for everyone (XEP-0425)`, async () => {
        const [a, b, c] = [pages[A], pages[B], pages[C]];
        await say_in_room(c, 'Buy cheap watches');
        const spam = message(a, 'Buy cheap watches');
        await openMenu(spam);
        // Participants have no such item: only a moderator's menu offers it.
        await spam.getByRole('menuitem', { name: 'Remove' }).click();
        for (const page of [a, b, c]) {
            await page.getByTestId('moderated').filter({ hasText: `removed by ${A} (moderator)` }).waitFor();
            if ((await message(page, 'Buy cheap watches').count()) !== 0) throw new Error('the removed text is still shown');
        }
        await shot(a, '06-message-actions');
        const bs = message(b, 'Works for me');
        await openMenu(bs);
        if ((await bs.getByRole('menuitem', { name: 'Remove' }).count()) !== 0) throw new Error('a participant is offered moderation');
        await b.keyboard.press('Escape');
    }],
];

await runSteps('group chat', steps);
