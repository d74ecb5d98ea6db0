//! The Jabberwock server.
