// A minimal XMLHttpRequest for Node, enough for strophe.js's BOSH transport.
//
// strophe.js's Node build brings its own DOM (@xmldom/xmldom) and WebSocket (ws) but not an
// XMLHttpRequest, which its BOSH transport uses; Node 20 has none either. The npm
// implementations either lack `responseXML` (which strophe reads the response from) or are
// unmaintained, so this file supplies the part of the XHR interface strophe touches: open,
// setRequestHeader, send, abort, overrideMimeType, readyState/onreadystatechange, status,
// responseText, responseXML (parsed with the global DOMParser that strophe installs) and
// getAllResponseHeaders. It is asynchronous only, and speaks plain HTTP and HTTPS.

import http from 'node:http';
import https from 'node:https';

const agents = {
    'http:': new http.Agent({ keepAlive: true }),
    'https:': new https.Agent({ keepAlive: true, rejectUnauthorized: false }),
};

export class XMLHttpRequest {
    static UNSENT = 0;
    static OPENED = 1;
    static HEADERS_RECEIVED = 2;
    static LOADING = 3;
    static DONE = 4;

    constructor() {
        this.readyState = 0;
        this.status = 0;
        this.statusText = '';
        this.responseText = '';
        this.responseXML = null;
        this.onreadystatechange = null;
        this.withCredentials = false;
        this._headers = {};
        this._responseHeaders = {};
        this._req = null;
    }

    _set(state) {
        this.readyState = state;
        if (typeof this.onreadystatechange === 'function') this.onreadystatechange();
    }

    overrideMimeType(_type) {}

    open(method, url, async = true) {
        if (async === false) throw new Error('this XMLHttpRequest is asynchronous only');
        this._method = method;
        this._url = new URL(url);
        this._headers = {};
        this.status = 0;
        this.responseText = '';
        this.responseXML = null;
        this._set(1);
    }

    setRequestHeader(name, value) {
        this._headers[name] = value;
    }

    getAllResponseHeaders() {
        if (this.readyState < 2) return '';
        return Object.entries(this._responseHeaders)
            .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(', ') : v}\r\n`)
            .join('');
    }

    getResponseHeader(name) {
        const v = this._responseHeaders[String(name).toLowerCase()];
        return v === undefined ? null : Array.isArray(v) ? v.join(', ') : v;
    }

    send(body = null) {
        if (this.readyState !== 1) throw new Error('send() before open()');
        const url = this._url;
        const lib = url.protocol === 'https:' ? https : http;
        const data = body == null ? null : Buffer.from(String(body), 'utf8');
        const headers = { ...this._headers };
        if (data) headers['Content-Length'] = data.length;
        const req = lib.request(url, { method: this._method, headers, agent: agents[url.protocol] }, (res) => {
            if (this._req !== req) return res.resume();
            this.status = res.statusCode;
            this.statusText = res.statusMessage;
            this._responseHeaders = res.headers;
            this._set(2);
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => {
                if (this._req !== req) return;
                this._req = null;
                this.responseText = Buffer.concat(chunks).toString('utf8');
                const type = String(res.headers['content-type'] || '');
                if (this.responseText && /xml/.test(type) && globalThis.DOMParser) {
                    this.responseXML = new globalThis.DOMParser().parseFromString(this.responseText, 'text/xml');
                }
                this._set(4);
            });
            res.on('error', () => this._networkError(req));
        });
        req.on('error', () => this._networkError(req));
        this._req = req;
        if (data) req.write(data);
        req.end();
    }

    _networkError(req) {
        if (this._req !== req) return;
        this._req = null;
        this.status = 0;
        this.responseText = '';
        this.responseXML = null;
        this._set(4);
    }

    abort() {
        const req = this._req;
        this._req = null;
        if (req) {
            req.destroy();
            this.status = 0;
            this._set(4);
        }
        this.readyState = 0;
    }
}

/** Installs the XMLHttpRequest above as the global one, unless Node already has one. */
export function installXMLHttpRequest() {
    if (typeof globalThis.XMLHttpRequest === 'undefined') globalThis.XMLHttpRequest = XMLHttpRequest;
}

/** Closes idle keep-alive connections so the process can exit. */
export function closeXMLHttpRequestAgents() {
    for (const a of Object.values(agents)) a.destroy();
}
