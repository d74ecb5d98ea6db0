//! Helpers for the black-box tests: start a server, speak raw XML to it.
