//! The worker that holds the XMPP session (see `session-worker.js`).

fn main() {
    jabberwock_web_client::worker();
}
