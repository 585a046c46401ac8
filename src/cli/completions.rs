//! `jobwatch completions SHELL`: the shell completion script, on stdout.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{Cli, CliResult};
use jobwatch_core::exit_code;

const COMPLETIONS_HELP: &str = "\
Examples:
  jobwatch completions bash > ~/.local/share/bash-completion/completions/jobwatch
  jobwatch completions zsh > ~/.zfunc/_jobwatch     # with fpath+=(~/.zfunc) in ~/.zshrc
  jobwatch completions fish > ~/.config/fish/completions/jobwatch.fish";

/// Print a shell completion script.
#[derive(Debug, Args)]
#[command(after_help = COMPLETIONS_HELP)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: Shell,
}

/// Runs the `completions` command; needs no jobs directory.
pub fn completions(a: CompletionsArgs) -> CliResult {
    let mut cmd = Cli::command();
    clap_complete::generate(a.shell, &mut cmd, "jobwatch", &mut std::io::stdout());
    Ok(exit_code::SUCCESS)
}
