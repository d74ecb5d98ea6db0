// The worker that holds the XMPP session (see the README, "One connection for all tabs"):
// a SharedWorker for every tab of this origin, or a dedicated Worker for one page where
// there is no SharedWorker (and for the widget). It runs the client's session program,
// jabberwock-session.js and its WebAssembly; the page names its own release in this
// worker's address (`?release=…`), so tabs of another release get a worker of their own.
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
import('./jabberwock-session.js').then((session) => session.default({ module_or_path: './jabberwock-session_bg.wasm' }));
