//! The `jobwatch` binary: everything lives in the library; see `cli`.

fn main() -> std::process::ExitCode {
    jobwatch::cli::main()
}
