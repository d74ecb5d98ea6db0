// End-to-end story of the message actions and file sharing, in two headless Chromium
// browsers against a running Jabberwock server: A writes, B reacts, A corrects, A retracts,
// B replies with a quote, A sends images (button, paste) that B sees inline and a file
// (dropped) that B sees as a link; after a reload B's history
// (from the archive) shows the same, without duplicates; B replies and corrects
// the reply while the server is down, which A gets in order once it is back.
//
// Environment (set by run.sh): E2E_BASE_URL, E2E_DOMAIN, E2E_TRANSPORT (websocket or bosh),
// E2E_DEAD_PORT (bosh), E2E_USER_A, E2E_USER_B, E2E_PASSWORD_A, E2E_PASSWORD_B,
// E2E_SERVER_BIN, E2E_SERVER_CONFIG, E2E_SERVER_LOG, E2E_SERVER_PIDFILE, E2E_ARTIFACTS,
// CHROMIUM_BIN, E2E_DEBUG.

import zlib from 'node:zlib';

import {
    DOMAIN, contact, expectOnline, message, must, newContext, newPage, runSteps, send, serverListening, shot, signIn, startServer, stopServer,
} from './lib.mjs';

const A_JID = `${must('E2E_USER_A')}@${DOMAIN}`;
const B_JID = `${must('E2E_USER_B')}@${DOMAIN}`;

/** A small PNG (a 64×48 gradient), made here: no file from outside the test. */
function png() {
    const crcTable = Array.from({ length: 256 }, (_, n) => {
        let c = n;
        for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
        return c >>> 0;
    });
    const crc = (buf) => {
        let c = 0xffffffff;
        for (const b of buf) c = crcTable[(c ^ b) & 0xff] ^ (c >>> 8);
        return (c ^ 0xffffffff) >>> 0;
    };
    const chunk = (type, data) => {
        const out = Buffer.alloc(12 + data.length);
        out.writeUInt32BE(data.length, 0);
        out.write(type, 4, 'ascii');
        data.copy(out, 8);
        out.writeUInt32BE(crc(out.subarray(4, 8 + data.length)), 8 + data.length);
        return out;
    };
    const [w, h] = [64, 48];
    const header = Buffer.alloc(13);
    header.writeUInt32BE(w, 0);
    header.writeUInt32BE(h, 4);
    header.set([8, 2, 0, 0, 0], 8);
    const rows = Buffer.alloc((w * 3 + 1) * h);
    for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) rows.set([x * 4, y * 5, 200], y * (w * 3 + 1) + 1 + x * 3);
    }
    return Buffer.concat([
        Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
        chunk('IHDR', header), chunk('IDAT', zlib.deflateSync(rows)), chunk('IEND', Buffer.alloc(0)),
    ]);
}

/** A browser profile of its own with one page, `name` in the report. */
async function openPage(name) {
    return newPage(await newContext({ viewport: { width: 1100, height: 760 } }), name);
}

/** Opens the actions menu of `msg` from the keyboard: focus the message, then its button. */
async function openMenu(msg) {
    await msg.focus();
    await msg.getByTestId('message-menu').press('Enter');
    await msg.getByRole('menu').waitFor();
}

/** What B's conversation shows, to compare before and after a reload. */
async function snapshot(page) {
    return page.locator('.log .msg').evaluateAll((msgs) => msgs.map((m) => [
        m.dataset.direction,
        (m.querySelector('.body')?.innerText || '').trim(),
        !!m.querySelector('.edited'),
        (m.querySelector('[data-testid=reply-quote]')?.innerText || '').trim(),
        (m.querySelector('[data-testid=reactions]')?.innerText || '').replace(/\s+/g, ' ').trim(),
        m.querySelector('img[data-testid=image-preview]')?.alt || '',
        (m.querySelector('a.attachment.file')?.innerText || '').trim(),
    ].join(' | ')));
}

const a = await openPage('A');
const b = await openPage('B');
const steps = [
    ['both sign in; A adds B, B accepts', async () => {
        await signIn(a, A_JID, must('E2E_PASSWORD_A'));
        await signIn(b, B_JID, must('E2E_PASSWORD_B'));
        await a.getByRole('button', { name: 'Add contact' }).click();
        await a.getByLabel('Their address').fill(B_JID);
        await a.getByRole('button', { name: 'Send request' }).click();
        const req = b.locator(`.request[data-jid="${A_JID}"]`);
        await req.getByRole('button', { name: `Accept ${A_JID}` }).click();
        await a.locator(`.contact[data-jid="${B_JID}"][data-status="online"]`).waitFor();
    }],

    ['A writes; B reacts from the keyboard menu; A sees the reaction', async () => {
        await contact(a, B_JID).click();
        await send(a, 'Lunch at noon?');
        await contact(b, A_JID).click();
        const msg = message(b, 'in', 'Lunch at noon?');
        await msg.waitFor();
        await openMenu(msg);
        // Every control of the menu has a name.
        for (const item of await msg.getByRole('menuitem').all()) {
            if (!(await item.getAttribute('aria-label')) && !(await item.innerText()).trim()) throw new Error('an unnamed menu item');
        }
        // Escape closes it and gives the focus back to its button.
        await b.keyboard.press('Escape');
        await msg.getByRole('menu').waitFor({ state: 'detached' });
        if (!(await msg.getByTestId('message-menu').evaluate((el) => el === document.activeElement))) throw new Error('focus not back on the menu button');
        await openMenu(msg);
        await shot(b, 'actions-menu');
        await msg.getByRole('menuitem', { name: 'React with 👍' }).click();
        await msg.getByTestId('reactions').getByRole('button', { name: /👍 1/ }).waitFor();
        const mine = message(a, 'out', 'Lunch at noon?');
        await mine.getByTestId('reactions').getByRole('button', { name: `👍 1: ${B_JID}` }).waitFor();
        // B read it: A sees "seen".
        await mine.locator('.tick.seen').waitFor();
    }],

    ['A corrects the last message with the Up arrow; B sees it edited, in place', async () => {
        const box = a.getByTestId('composer');
        await box.focus();
        await box.press('ArrowUp');
        await a.getByTestId('composer-banner').filter({ hasText: 'Editing' }).waitFor();
        if ((await box.inputValue()) !== 'Lunch at noon?') throw new Error(`composer holds ${await box.inputValue()}`);
        await box.fill('Lunch at one?');
        await box.press('Enter');
        const edited = message(b, 'in', 'Lunch at one?');
        await edited.locator('.edited').waitFor();
        await edited.getByTestId('reactions').waitFor();
        if ((await message(b, 'in', 'Lunch at noon?').count()) !== 0) throw new Error('the original stayed');
    }],

    ['A retracts a message; B sees it retracted', async () => {
        await send(a, 'Sent to the wrong chat');
        await message(b, 'in', 'Sent to the wrong chat').waitFor();
        const mine = message(a, 'out', 'Sent to the wrong chat');
        await openMenu(mine);
        await mine.getByRole('menuitem', { name: 'Retract' }).click();
        await message(b, 'in', 'message retracted').waitFor();
        if ((await message(b, 'in', 'Sent to the wrong chat').count()) !== 0) throw new Error('the retracted text is still shown');
    }],

    ['B replies with a quote; A sees the quote of its message', async () => {
        const msg = message(b, 'in', 'Lunch at one?');
        await openMenu(msg);
        await msg.getByRole('menuitem', { name: 'Reply' }).click();
        await b.getByTestId('composer-banner').filter({ hasText: 'Lunch at one?' }).waitFor();
        await send(b, 'Sure, see you there');
        const reply = message(a, 'in', 'Sure, see you there');
        await reply.getByTestId('reply-quote').filter({ hasText: 'Lunch at one?' }).waitFor();
        const body = (await reply.locator('.body').innerText()).trim();
        if (body !== 'Sure, see you there') throw new Error(`the fallback quote was not stripped: ${body}`);
    }],

    ['A sends an image with the attach button; B sees it inline', async () => {
        await a.getByTestId('file-input').setInputFiles({ name: 'gradient.png', mimeType: 'image/png', buffer: png() });
        const img = b.locator('.msg.in img[data-testid=image-preview]');
        await img.waitFor();
        await img.evaluate((el) => el.complete ? null : new Promise((ok) => { el.onload = ok; el.onerror = ok; }));
        const width = await img.evaluate((el) => el.naturalWidth);
        if (width !== 64) throw new Error(`the preview did not load (width ${width}): refused by the page's policy?`);
        await a.locator('.msg.out img[data-testid=image-preview]').waitFor();
        await shot(a, 'actions-conversation');
        await shot(b, 'actions-upload');
    }],

    ['a file over the server limit is refused before any upload', async () => {
        const big = Buffer.alloc(11 * 1024 * 1024, 1);
        await a.getByTestId('file-input').setInputFiles({ name: 'huge.bin', mimeType: 'application/octet-stream', buffer: big });
        await a.getByTestId('upload').filter({ hasText: 'the server takes files up to' }).waitFor();
        await a.getByTestId('upload').getByRole('button', { name: 'Dismiss' }).click();
    }],

    ['A drops a file on the conversation and pastes an image; B sees a link and a preview', async () => {
        // What the browser hands the page for a drop and a paste: a DataTransfer of files.
        await a.evaluate(() => {
            const dt = new DataTransfer();
            dt.items.add(new File(['meeting notes'], 'notes.txt', { type: 'text/plain' }));
            const log = document.querySelector('[data-testid=message-log]');
            log.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
            log.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
        });
        await b.locator('.msg.in a.attachment.file').filter({ hasText: 'notes.txt' }).waitFor();
        await a.evaluate((b64) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], 'pasted.png', { type: 'image/png' }));
            const paste = new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true });
            document.querySelector('[data-testid=composer]').dispatchEvent(paste);
        }, png().toString('base64'));
        await b.locator('.msg.in img[data-testid=image-preview][alt="Image: pasted.png"]').waitFor();
    }],

    ['every control of the conversation has a name, every image a text', async () => {
        for (const page of [a, b]) {
            await page.locator('.msg').first().focus();
            const unnamed = await page.locator('.chat button, .chat input:not([type=file]), .chat textarea, .chat img, .chat progress').evaluateAll((els) => els
                .filter((el) => !(el.getAttribute('aria-label') || el.getAttribute('alt') || el.textContent.trim()))
                .map((el) => el.outerHTML.slice(0, 120)));
            if (unnamed.length) throw new Error(`unnamed controls:\n${unnamed.join('\n')}`);
        }
    }],

    ['after a reload, B\'s history shows the same, without duplicates', async () => {
        const before = await snapshot(b);
        if (before.length !== 6) throw new Error(`expected 6 messages, saw ${before.length}:\n${before.join('\n')}`);
        await b.reload({ waitUntil: 'load' });
        await b.getByTestId('connection-status').filter({ hasText: 'Online' }).waitFor();
        await b.locator('.msg.in img[data-testid=image-preview][alt="Image: pasted.png"]').waitFor();
        await message(b, 'in', 'Lunch at one?').getByTestId('reactions').waitFor();
        const after = await snapshot(b);
        if (JSON.stringify(after) !== JSON.stringify(before)) {
            throw new Error(`history differs after the reload:\nbefore:\n${before.join('\n')}\nafter:\n${after.join('\n')}`);
        }
    }],

    ['while the server is down, B replies and corrects the reply: both wait, and A gets them in order', async () => {
        // (The browser's offline mode would not do: it leaves the worker's open WebSocket be.)
        await stopServer();
        await b.getByTestId('connection-status').filter({ hasText: /Reconnecting|Offline/ }).waitFor();
        const msg = message(b, 'in', 'Lunch at one?');
        await openMenu(msg);
        await msg.getByRole('menuitem', { name: 'Reply' }).click();
        await send(b, 'Running late');
        const waiting = (text) => message(b, 'out', text).getByRole('img', { name: 'waiting to send', exact: true });
        await waiting('Running late').waitFor();
        const box = b.getByTestId('composer');
        await box.focus();
        await box.press('ArrowUp');
        await b.getByTestId('composer-banner').filter({ hasText: 'Editing' }).waitFor();
        await box.fill('Running late, sorry');
        await box.press('Enter');
        await waiting('Running late, sorry').waitFor();
        startServer();
        await serverListening();
        for (const page of [a, b]) {
            // Without waiting for the backoff; an attempt of its own may have got through first.
            await page.getByTestId('reconnect-now').click({ timeout: 5000 }).catch(() => {});
            await expectOnline(page);
        }
        // The correction came after the reply: A shows one message, edited, with its quote.
        const reply = message(a, 'in', 'Running late, sorry');
        await reply.locator('.edited').waitFor();
        await reply.getByTestId('reply-quote').filter({ hasText: 'Lunch at one?' }).waitFor();
        if ((await message(a, 'in', 'Running late').count()) !== 1) throw new Error('the correction shows as a message of its own');
        await message(b, 'out', 'Running late, sorry').getByRole('img', { name: /^(sent|delivered)$/ }).waitFor();
    }],
];

await runSteps('message actions', steps);
