// @xmpp/client (xmpp.js) over RFC 7395 WebSocket, wrapped for the suites: log in, send
// initial presence, and collect incoming chat messages in an Inbox.

import WebSocket from 'ws';
import { client, xml } from '@xmpp/client';

import { Failure, Inbox, debugEnabled, say, waitFor, within } from './harness.mjs';

// Node 20 has no global WebSocket (Node 22 does); @xmpp/websocket uses the global one.
globalThis.WebSocket ??= WebSocket;

export { xml };

export class XmppJsClient {
    /** `service` is the ws:// or wss:// URL; `jid` is the bare JID. */
    constructor(label, { service, jid, password, resource }) {
        this.label = label;
        const [username, domain] = jid.split('@');
        this.xmpp = client({ service, domain, username, password, resource, timeout: 10000 });
        this.messages = new Inbox(label);
        this.errors = [];
        this.jid = null;
        this.xmpp.reconnect.stop(); // a dropped connection is a failure here, not something to hide
        this.xmpp.on('error', (e) => {
            this.errors.push(String(e && (e.condition || e.message || e)));
            if (debugEnabled()) say(`${label}: error ${e && e.stack}`);
        });
        this.presences = new Inbox(`${label} (presence)`);
        this.xmpp.on('stanza', (st) => {
            if (st.is('presence')) {
                this.presences.push({ from: st.attrs.from, type: st.attrs.type || 'available' });
                return;
            }
            if (!st.is('message')) return;
            const body = st.getChildText('body');
            if (body === null) return;
            this.messages.push({ from: st.attrs.from, to: st.attrs.to, type: st.attrs.type, body });
        });
        this.trace = []; // the last frames either way, shown when logging in fails
        const record = (dir) => (d) => {
            this.trace.push(`${dir} ${d}`);
            if (this.trace.length > 30) this.trace.shift();
            if (debugEnabled()) say(`${label} ${dir} ${d}`);
        };
        this.xmpp.on('element', (el) => record('RECV')(el.toString()));
        this.xmpp.on('send', (el) => record('SEND')(el.toString()));
        if (debugEnabled()) this.xmpp.on('status', (s) => say(`${label}: status ${s}`));
    }

    /** Stream errors and the last frames, for failure messages. */
    describe() {
        const errs = this.errors.length ? `\n  ${this.label} errors: ${this.errors.join('; ')}` : '';
        return `${errs}\n  ${this.label}, last frames:\n${this.trace.map((l) => `    ${l}`).join('\n')}`;
    }

    async start() {
        try {
            const address = await within(15000, `${this.label} to come online`, this.xmpp.start());
            this.jid = address.toString();
        } catch (e) {
            const errs = this.errors.length ? ` (errors: ${this.errors.join('; ')})` : '';
            const trace = this.trace.map((l) => `    ${l}`).join('\n');
            throw new Failure(`${this.label} could not log in: ${e.message}${errs}; the exchange:\n${trace}`);
        }
        // @xmpp/client 0.14.0 enables XEP-0198 stream management right after binding and
        // resets its count of received stanzas only once the <enabled/> answer has gone
        // through a promise chain; stanzas that arrive in the same read as <enabled/> are
        // counted first and then forgotten, so its later <a h=''/> goes backwards and the
        // server rightly ends the stream. Waiting for <enabled/> before the initial presence
        // (the first thing that makes the server send anything) avoids that client bug.
        const sm = this.xmpp.streamManagement;
        if (sm) {
            await waitFor(() => !sm.enableSent || sm.enabled, `${this.label}'s stream management to be enabled`, 5000, 10)
                .catch(() => {});
        }
        await this.xmpp.send(xml('presence'));
        return this.jid;
    }

    sendChat(to, body) {
        return this.xmpp.send(xml('message', { to, type: 'chat' }, xml('body', {}, body)));
    }

    sendPresence(attrs = {}) {
        return this.xmpp.send(xml('presence', attrs));
    }

    /** The account's roster: [{jid, subscription, name}]. */
    async rosterGet() {
        const q = await this.xmpp.iqCaller.get(xml('query', { xmlns: 'jabber:iq:roster' }));
        return q.getChildren('item').map((i) => ({ jid: i.attrs.jid, subscription: i.attrs.subscription, name: i.attrs.name }));
    }

    rosterSet(jid, name) {
        return this.xmpp.iqCaller.set(xml('query', { xmlns: 'jabber:iq:roster' }, xml('item', { jid, name })));
    }

    async stop() {
        if (this.xmpp.status === 'offline') return;
        try {
            await this.xmpp.send(xml('presence', { type: 'unavailable' }));
        } catch {
            // already gone
        }
        await this.xmpp.stop();
    }
}
