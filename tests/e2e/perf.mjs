// Rendering figures of the web client with a large roster and a long conversation, in
// headless Chromium against the real server (run through `tests/e2e/run.sh --perf`).
//
// Setup goes through the server as any client would: user B's roster gets CONTACTS items
// by roster sets, and user A sends B MESSAGES chat messages, which the server archives
// (XEP-0313) for both. Then B signs in with the web client, and the script measures:
//
//   * page load to the sign-in form;
//   * sign-in to the roster shown (CONTACTS contacts);
//   * scrolling the roster from top to bottom, a screenful per frame (the time of each
//     step runs to the next animation frame, so 16.7 ms is the floor at 60 Hz);
//   * paging the whole conversation in from the archive by scrolling up;
//   * opening the conversation with all MESSAGES messages loaded;
//   * scrolling it from the oldest message to the newest;
//   * with all of it loaded and open, BURST messages arriving one after another: the time
//     until the last shows (each costs what the session's worker sends its tab);
//   * BURST roster pushes renaming a contact: the time until the last name shows (each
//     refreshes the whole contact list, as a presence change does);
//   * what the session's worker sends the page during each burst, in bytes and messages;
//   * in a room B joined (with the web client) holding ROOM_MESSAGES messages that came
//     while another conversation was open, and OCCUPANTS other occupants (one of them
//     the writer): opening it, BURST groupchat messages arriving one after another, and
//     every other occupant going away, each until the last shows;
//
// and how many contacts and messages are in the page meanwhile. Figures go to stdout and
// to $E2E_ARTIFACTS/perf.json.
//
// The browser and its profile are lib.mjs's, as the suites have them (without the protocol
// log). Environment: as web_client.mjs (E2E_BASE_URL, E2E_DOMAIN, E2E_USER_A/B and their
// passwords, E2E_ARTIFACTS, CHROMIUM_BIN), plus PERF_CONTACTS (2000) and PERF_MESSAGES
// (10000), PERF_ROOM_MESSAGES (3000), PERF_OCCUPANTS (199: with B, the 200 a room takes
// by default). Needs Node's WebSocket (`node --experimental-websocket` on Node 20).

import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { ARTIFACTS, BASE, DOMAIN, browser, newContext, newPage } from './lib.mjs';

const A = process.env.E2E_USER_A;
const B = process.env.E2E_USER_B;
const CONTACTS = Number(process.env.PERF_CONTACTS || 2000);
const MESSAGES = Number(process.env.PERF_MESSAGES || 10000);
const BURST = Number(process.env.PERF_BURST || 100);
const ROOM_MESSAGES = Number(process.env.PERF_ROOM_MESSAGES || 3000);
const OCCUPANTS = Number(process.env.PERF_OCCUPANTS || 199);
const WS_URL = `${BASE.replace(/^http/, 'ws')}/xmpp-websocket`;

const say = (msg) => process.stderr.write(`perf: ${msg}\n`);
const results = {};
function record(name, value, unit) {
    results[name] = { value: Math.round(value * 10) / 10, unit };
    say(`${name}: ${results[name].value} ${unit}`);
}

// ---- a bare XMPP-over-WebSocket session, for the setup only ----

const b64 = (s) => Buffer.from(s).toString('base64');
const hmac = (key, data) => crypto.createHmac('sha256', key).update(data).digest();

class Raw {
    static async connect(user, password, resource = 'perf') {
        const r = new Raw();
        await r.open(user, password, resource);
        return r;
    }

    async open(user, password, resource) {
        this.queue = [];
        this.waiters = [];
        this.ws = new WebSocket(WS_URL, 'xmpp');
        this.ws.onmessage = (e) => {
            if (process.env.PERF_DEBUG) say(`<- ${String(e.data).slice(0, 200)}`);
            const waiter = this.waiters.findIndex((w) => w.test(e.data));
            if (waiter >= 0) this.waiters.splice(waiter, 1)[0].resolve(e.data);
        };
        await new Promise((resolve, reject) => { this.ws.onopen = resolve; this.ws.onerror = reject; });
        this.ws.onclose = () => this.waiters.splice(0).forEach((w) => w.reject(new Error(`${user}: the server closed the stream`)));
        const features = this.expect(/mechanisms/);
        this.send(`<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='${DOMAIN}' version='1.0'/>`);
        await features;
        // SCRAM-SHA-256 (RFC 7677).
        const nonce = crypto.randomBytes(18).toString('base64');
        const firstBare = `n=${user},r=${nonce}`;
        const challenge = this.expect(/<challenge/);
        this.send(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>${b64(`n,,${firstBare}`)}</auth>`);
        const serverFirst = Buffer.from(/>([^<]+)</.exec(await challenge)[1], 'base64').toString();
        const attrs = Object.fromEntries(serverFirst.split(',').map((p) => [p[0], p.slice(2)]));
        const salted = crypto.pbkdf2Sync(password, Buffer.from(attrs.s, 'base64'), Number(attrs.i), 32, 'sha256');
        const clientKey = hmac(salted, 'Client Key');
        const withoutProof = `c=biws,r=${attrs.r}`;
        const signature = hmac(crypto.createHash('sha256').update(clientKey).digest(), `${firstBare},${serverFirst},${withoutProof}`);
        const proof = Buffer.from(clientKey.map((b, i) => b ^ signature[i]));
        const success = this.expect(/<success/);
        this.send(`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>${b64(`${withoutProof},p=${proof.toString('base64')}`)}</response>`);
        await success;
        const bindFeatures = this.expect(/urn:ietf:params:xml:ns:xmpp-bind/);
        this.send(`<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='${DOMAIN}' version='1.0'/>`);
        await bindFeatures;
        await this.iq(`<iq xmlns='jabber:client' type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>${resource}</resource></bind></iq>`, 'bind');
    }

    send(xml) {
        this.ws.send(xml);
    }

    /** The next frame matching `re`, from now on. */
    expect(re) {
        return new Promise((resolve, reject) => this.waiters.push({ test: (d) => re.test(d), resolve, reject }));
    }

    async iq(xml, id) {
        const answer = this.expect(new RegExp(`id=["']${id}["']`));
        this.send(xml);
        const text = await answer;
        if (!/type=["']result["']/.test(text)) throw new Error(`iq ${id} failed: ${text}`);
    }

    close() {
        this.send("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>");
        this.ws.close();
    }
}

const pad = (n) => String(n).padStart(5, '0');

/** Runs `f` and records what the session's worker sent the page meanwhile, as `name`. */
async function traffic(page, name, f) {
    const count = () => page.evaluate(() => ({ ...window.fromWorker }));
    const before = await count();
    await f();
    const after = await count();
    record(`${name}: sent by the worker to the page`, (after.bytes - before.bytes) / 1024, `KiB in ${after.messages - before.messages} messages`);
}

async function setup() {
    const start = Date.now();
    const reader = await Raw.connect(B, process.env.E2E_PASSWORD_B);
    const writer = await Raw.connect(A, process.env.E2E_PASSWORD_A);
    // B's roster: A, and CONTACTS others in 20 groups.
    const item = (jid, name, group) =>
        `<item jid='${jid}' name='${name}'><group>${group}</group></item>`;
    await reader.iq(`<iq xmlns='jabber:client' type='set' id='ra'><query xmlns='jabber:iq:roster'>${item(`${A}@${DOMAIN}`, 'A Writer', 'Group 00')}</query></iq>`, 'ra');
    for (let i = 0; i < CONTACTS; i += 100) {
        const batch = [];
        for (let j = i; j < Math.min(i + 100, CONTACTS); j++) {
            batch.push(reader.iq(
                `<iq xmlns='jabber:client' type='set' id='r${j}'><query xmlns='jabber:iq:roster'>${item(`contact${pad(j)}@${DOMAIN}`, `Contact ${pad(j)}`, `Group ${pad(j % 20).slice(3)}`)}</query></iq>`,
                `r${j}`,
            ));
        }
        await Promise.all(batch);
    }
    say(`roster of ${CONTACTS + 1} set in ${Date.now() - start} ms`);
    // A writes; B is online (with presence) so that nothing waits in offline storage.
    reader.send("<presence xmlns='jabber:client'/>");
    const t = Date.now();
    for (let i = 1; i <= MESSAGES; i += 500) {
        for (let j = i; j < Math.min(i + 500, MESSAGES + 1); j++) {
            writer.send(`<message xmlns='jabber:client' to='${B}@${DOMAIN}' type='chat' id='m${j}'><body>Message ${j} of ${MESSAGES}</body></message>`);
        }
        await writer.iq(`<iq xmlns='jabber:client' type='get' id='p${i}' to='${DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>`, `p${i}`);
    }
    say(`${MESSAGES} messages sent in ${Date.now() - t} ms`);
    writer.close();
    reader.close();
    // Archive writes are batched: let the last batch commit.
    await new Promise((r) => setTimeout(r, 1500));
}

// ---- the measurements ----

async function main() {
    // Node's WebSocket does not keep the process alive by itself.
    const alive = setInterval(() => {}, 1000);
    await setup();
    clearInterval(alive);
    const context = await newContext({ protocolLog: false });
    // What the session's worker sends the page: every message its port (or the dedicated
    // worker) delivers, counted as it arrives.
    await context.addInitScript(() => {
        window.fromWorker = { messages: 0, bytes: 0 };
        for (const proto of [MessagePort.prototype, Worker.prototype]) {
            const { set } = Object.getOwnPropertyDescriptor(proto, 'onmessage');
            Object.defineProperty(proto, 'onmessage', {
                set(handler) {
                    set.call(this, handler && ((e) => {
                        window.fromWorker.messages++;
                        window.fromWorker.bytes += typeof e.data === 'string' ? e.data.length : 0;
                        return handler(e);
                    }));
                },
            });
        }
    });
    const page = await newPage(context, 'B');
    page.setDefaultTimeout(120000);
    const writer = `${A}@${DOMAIN}`;

    let t = Date.now();
    await page.goto(BASE, { waitUntil: 'commit' });
    await page.getByRole('heading', { name: 'Sign in to chat' }).waitFor();
    record('page load to the sign-in form', Date.now() - t, 'ms');

    await page.getByLabel('Address', { exact: true }).fill(`${B}@${DOMAIN}`);
    await page.getByLabel('Password', { exact: true }).fill(process.env.E2E_PASSWORD_B);
    t = Date.now();
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('.contact').first().waitFor();
    record(`sign-in to the roster shown (${CONTACTS + 1} contacts)`, Date.now() - t, 'ms');
    record('contacts in the page', await page.locator('.contact').count(), 'elements');

    // The roster, top to bottom, a screenful per frame.
    const rosterScroll = await page.getByTestId('contact-scroll').evaluate(async (el) => {
        const frames = [];
        const start = performance.now();
        while (el.scrollTop + el.clientHeight < el.scrollHeight - 1) {
            const f = performance.now();
            el.scrollTop += el.clientHeight;
            await new Promise((r) => requestAnimationFrame(r));
            frames.push(performance.now() - f);
        }
        frames.sort((x, y) => x - y);
        return { total: performance.now() - start, steps: frames.length, median: frames[frames.length >> 1], worst: frames[frames.length - 1] };
    });
    record(`roster scrolled top to bottom (${rosterScroll.steps} screens)`, rosterScroll.total, 'ms');
    record('roster scroll, median screen', rosterScroll.median, 'ms');
    record('roster scroll, slowest screen', rosterScroll.worst, 'ms');

    // The whole conversation in from the archive, by scrolling up.
    await page.getByTestId('contact-scroll').evaluate((el) => { el.scrollTop = 0; });
    await page.locator(`.contact[data-jid="${writer}"]`).click();
    await page.locator('.msg .body').filter({ hasText: `Message ${MESSAGES} of ${MESSAGES}` }).waitFor();
    t = Date.now();
    const log = page.getByTestId('message-log');
    const oldest = page.locator('.msg .body').filter({ hasText: `Message 1 of ${MESSAGES}` });
    while (!(await oldest.count())) {
        await log.evaluate((el) => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); });
        await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0))));
    }
    record(`${MESSAGES} messages paged in from the archive by scrolling up`, Date.now() - t, 'ms');
    record('messages in the page', await page.locator('.msg').count(), 'elements');

    // Opening the conversation with everything loaded.
    await page.locator('.contact').nth(1).click();
    await page.getByTestId('chat-title').filter({ hasNotText: 'A Writer' }).waitFor();
    t = Date.now();
    await page.locator(`.contact[data-jid="${writer}"]`).click();
    await page.locator('.msg .body').filter({ hasText: `Message ${MESSAGES} of ${MESSAGES}` }).waitFor();
    record(`opening the conversation of ${MESSAGES} messages`, Date.now() - t, 'ms');

    // Back up to the oldest, then down to the newest, a screenful per frame.
    while (!(await oldest.count())) {
        await log.evaluate((el) => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); });
        await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0))));
    }
    const chatScroll = await log.evaluate(async (el, last) => {
        const frames = [];
        const start = performance.now();
        const newest = () => [...el.querySelectorAll('.msg .body')].some((b) => b.textContent === last);
        while (!(newest() && el.scrollTop + el.clientHeight >= el.scrollHeight - 1)) {
            const f = performance.now();
            el.scrollTop += el.clientHeight;
            await new Promise((r) => requestAnimationFrame(r));
            frames.push(performance.now() - f);
            if (frames.length > 20000) throw new Error('the end of the conversation was never reached');
        }
        frames.sort((x, y) => x - y);
        return { total: performance.now() - start, steps: frames.length, median: frames[frames.length >> 1], worst: frames[frames.length - 1] };
    }, `Message ${MESSAGES} of ${MESSAGES}`);
    record(`conversation scrolled oldest to newest (${chatScroll.steps} screens)`, chatScroll.total, 'ms');
    record('conversation scroll, median screen', chatScroll.median, 'ms');
    record('conversation scroll, slowest screen', chatScroll.worst, 'ms');
    await page.screenshot({ path: path.join(ARTIFACTS, 'perf-long-conversation.png') });

    // Messages arriving in the open conversation, and changes to the contact list.
    const keepAlive = setInterval(() => {}, 1000);
    const sender = await Raw.connect(A, process.env.E2E_PASSWORD_A);
    const roster = await Raw.connect(B, process.env.E2E_PASSWORD_B);
    await traffic(page, `${BURST} messages arriving in the open conversation`, async () => {
        t = Date.now();
        for (let i = 1; i <= BURST; i++) {
            sender.send(`<message xmlns='jabber:client' to='${B}@${DOMAIN}' type='chat' id='burst${i}'><body>Burst ${i} of ${BURST}</body></message>`);
        }
        await page.locator('.msg .body').filter({ hasText: `Burst ${BURST} of ${BURST}` }).waitFor();
        record(`${BURST} messages arriving in the open conversation of ${MESSAGES}`, Date.now() - t, 'ms');
    });
    t = Date.now();
    for (let i = 1; i <= BURST; i++) {
        roster.send(`<iq xmlns='jabber:client' type='set' id='rename${i}'><query xmlns='jabber:iq:roster'><item jid='${writer}' name='A Writer r${i}'><group>Group 00</group></item></query></iq>`);
    }
    await page.locator(`.contact[data-jid="${writer}"] .contact-name`).filter({ hasText: new RegExp(`^A Writer r${BURST}$`) }).waitFor();
    record(`${BURST} roster changes with ${CONTACTS + 1} contacts`, Date.now() - t, 'ms');
    sender.close();
    roster.close();
    await roomFigures(page);
    clearInterval(keepAlive);

    await browser.close();
    fs.writeFileSync(path.join(ARTIFACTS, 'perf.json'), `${JSON.stringify(results, null, 2)}\n`);
}

/** The room figures (see the top): B is signed in on `page`, with a conversation open. */
async function roomFigures(page) {
    const room = `perf@conference.${DOMAIN}`;
    await page.getByTestId('join-room-open').click();
    await page.getByTestId('room-address').fill(room);
    await page.getByTestId('room-nick').fill('reader');
    await page.getByTestId('room-create').check();
    await page.getByTestId('room-join').click();
    await page.locator('li.occupant[data-nick="reader"]').waitFor();
    await page.locator(`.contact[data-jid="${A}@${DOMAIN}"]`).click();
    await page.getByTestId('chat-title').waitFor();

    // The other occupants, each a session of A; the first writes.
    const occupants = [];
    for (let i = 0; i < OCCUPANTS; i++) {
        const o = await Raw.connect(A, process.env.E2E_PASSWORD_A, `o${i}`);
        const joined = o.expect(/status code=["']110["']/);
        o.send(`<presence xmlns='jabber:client' to='${room}/o${i}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>`);
        await joined;
        occupants.push(o);
        // Only the writer is in the room while its history is written: the others need not
        // receive it.
        if (i === 0) {
            for (let m = 1; m <= ROOM_MESSAGES; m += 500) {
                for (let n = m; n < Math.min(m + 500, ROOM_MESSAGES + 1); n++) {
                    o.send(`<message xmlns='jabber:client' to='${room}' type='groupchat' id='g${n}'><body>Room ${n} of ${ROOM_MESSAGES}</body></message>`);
                }
                await o.iq(`<iq xmlns='jabber:client' type='get' id='gp${m}' to='${DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>`, `gp${m}`);
            }
        }
    }
    const here = page.getByTestId('occupants').getByRole('heading', { name: `${OCCUPANTS + 1} here` });
    const row = page.locator(`[data-testid="room-row"][data-room="${room}"]`);
    let t = Date.now();
    await row.click();
    await page.getByTestId('room-log').locator('.msg .body').filter({ hasText: `Room ${ROOM_MESSAGES} of ${ROOM_MESSAGES}` }).waitFor();
    await here.waitFor();
    record(`opening the room of ${ROOM_MESSAGES} messages and ${OCCUPANTS + 1} occupants`, Date.now() - t, 'ms');

    await traffic(page, `${BURST} messages arriving in the open room`, async () => {
        t = Date.now();
        for (let i = 1; i <= BURST; i++) {
            occupants[0].send(`<message xmlns='jabber:client' to='${room}' type='groupchat' id='rb${i}'><body>Room burst ${i} of ${BURST}</body></message>`);
        }
        await page.getByTestId('room-log').locator('.msg .body').filter({ hasText: `Room burst ${BURST} of ${BURST}` }).waitFor();
        record(`${BURST} messages arriving in the open room of ${ROOM_MESSAGES}`, Date.now() - t, 'ms');
    });

    await traffic(page, `${OCCUPANTS} occupants going away`, async () => {
        t = Date.now();
        occupants.forEach((o, i) => o.send(`<presence xmlns='jabber:client' to='${room}/o${i}'><show>away</show></presence>`));
        const away = (n) => document.querySelectorAll('li.occupant[data-status="away"]').length === n;
        await page.waitForFunction(away, OCCUPANTS, { polling: 50, timeout: 120000 });
        record(`${OCCUPANTS} occupants going away in the open room`, Date.now() - t, 'ms');
    });
    await page.screenshot({ path: path.join(ARTIFACTS, 'perf-busy-room.png') });
    occupants.forEach((o) => o.close());
}

main().catch((e) => {
    say(`FAILED: ${e.stack || e}`);
    process.exit(1);
});
