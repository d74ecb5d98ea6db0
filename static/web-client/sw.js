// The service worker that makes the client an installable app that starts without a
// network: it keeps the app shell (the page, its script, its WebAssembly, its styles and
// icons) and answers from it when the network cannot.
//
// - The page: from the network when it answers (so a new release is taken at once), else
//   the copy kept last time.
// - Assets: trunk names each by its content hash, so a kept copy is never stale: kept
//   copies first, the network otherwise (and the answer kept).
// - The session's worker (session-worker.js, jabberwock-session.js and its WebAssembly),
//   which trunk does not name by content: as the page, from the network first.
// - Nothing else is touched: XMPP (WebSocket, BOSH), discovery, uploads and metrics always
//   go to the network.
// Old releases' assets are dropped once a new page has been kept.

const CACHE = 'jabberwock-shell-v1';
const SHELL = [
    './', 'manifest.webmanifest', 'icons/icon.svg', 'icons/icon-192.png',
    'session-worker.js', 'jabberwock-session.js', 'jabberwock-session_bg.wasm',
];
const ASSET = /\.(?:js|wasm|css|svg|png|webmanifest)$/;
const WORKER = /\/(?:session-worker\.js|jabberwock-session\.js|jabberwock-session_bg\.wasm)$/;
const NETWORK_ONLY = ['/http-bind', '/xmpp-websocket', '/.well-known/', '/upload/', '/metrics', '/healthz', '/readyz'];

self.addEventListener('install', (event) => {
    event.waitUntil(caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
    event.waitUntil(
        caches.keys()
            .then((names) => Promise.all(names.filter((n) => n !== CACHE).map((n) => caches.delete(n))))
            .then(() => self.clients.claim()),
    );
});

self.addEventListener('fetch', (event) => {
    const request = event.request;
    const url = new URL(request.url);
    if (request.method !== 'GET' || url.origin !== self.location.origin) return;
    if (NETWORK_ONLY.some((p) => url.pathname.startsWith(p))) return;
    if (request.mode === 'navigate') {
        event.respondWith(page(request));
    } else if (WORKER.test(url.pathname)) {
        event.respondWith(networkFirst(request, url.pathname));
    } else if (ASSET.test(url.pathname)) {
        event.respondWith(asset(request));
    }
});

async function page(request) {
    const cache = await caches.open(CACHE);
    try {
        const response = await fetch(request);
        if (response.ok) {
            await cache.put('./', response.clone());
            prune(cache, await response.clone().text());
        }
        return response;
    } catch (e) {
        const kept = await cache.match('./');
        if (kept) return kept;
        throw e;
    }
}

// From the network when it answers (kept under `key`), else the kept copy.
async function networkFirst(request, key) {
    const cache = await caches.open(CACHE);
    try {
        const response = await fetch(request);
        if (response.ok) await cache.put(key, response.clone());
        return response;
    } catch (e) {
        const kept = await cache.match(key);
        if (kept) return kept;
        throw e;
    }
}

async function asset(request) {
    const cache = await caches.open(CACHE);
    const kept = await cache.match(request);
    if (kept) return kept;
    const response = await fetch(request);
    if (response.ok) await cache.put(request, response.clone());
    return response;
}

// Drops kept hashed assets the current page no longer names (a previous release's).
async function prune(cache, html) {
    for (const request of await cache.keys()) {
        const name = new URL(request.url).pathname.split('/').pop();
        if (/-[0-9a-f]{16}(?:_bg)?\.(?:js|wasm|css)$/.test(name) && !html.includes(name)) await cache.delete(request);
    }
}
