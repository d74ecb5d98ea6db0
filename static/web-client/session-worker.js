// The worker that holds the XMPP session (see the README, "One connection for all tabs"):
// a SharedWorker for every tab of this origin, or a dedicated Worker for one page where
// there is no SharedWorker (and for the widget). It runs the client's session program,
// jabberwock-session.js and its WebAssembly; the page names its own release in this
// worker's address (`?release=…`), so tabs of another release get a worker of their own.
// A classic worker, not a module, so that browsers without module workers (Firefox before
// 114, Safari before 15) run it too: wasm-bindgen's no-modules target makes the program a
// script that defines `wasm_bindgen`.
//
// What arrives while the WebAssembly loads (tabs connecting, or the page's first messages)
// waits in `jabberwockPending`; the program takes it over when it starts
// (src/net/shared.rs).

self.jabberwockPending = [];
if ('onconnect' in self) {
    self.onconnect = (event) => self.jabberwockPending.push(event);
} else {
    self.onmessage = (event) => self.jabberwockPending.push(event);
}
importScripts('./jabberwock-session.js');
wasm_bindgen({ module_or_path: './jabberwock-session_bg.wasm' });
