//! The real `jabberwock` command, built inside this package so process-level tests
//! (restarts, `kill -9`) can start it through `CARGO_BIN_EXE_jabberwock-test-server`.

fn main() -> std::process::ExitCode {
    jabberwock::cli::main()
}
