fn main() -> std::process::ExitCode {
    jabberwock::cli::main()
}
