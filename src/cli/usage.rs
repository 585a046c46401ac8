//! Usage errors as one line that says what is wrong and how to fix it.
//!
//! clap renders an error over several lines (the problem, the arguments
//! concerned, a usage block); jobwatch prints one line. This module keeps
//! the useful part, and for the mistakes people make most with `run`
//! (forgetting the `--` before the command, or the command itself) says
//! exactly what to type.

use std::ffi::OsString;

use clap::CommandFactory;
use clap::error::{ContextKind, ContextValue, ErrorKind};

use super::Cli;

/// The one-line message for a usage error, given the process's arguments
/// (`argv[0]` included).
pub fn message(e: &clap::Error, argv: &[OsString]) -> String {
    let argv: Vec<String> = argv
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let run = RunLine::find(&argv);
    match e.kind() {
        ErrorKind::UnknownArgument => {
            let arg = context(e, ContextKind::InvalidArg).unwrap_or_default();
            if arg.starts_with('-') {
                // A mistyped job name like `-x` reaches clap as an option.
                format!(
                    "{}; if that was meant as a job name: names start with a letter or digit",
                    first_line(e)
                )
            } else if let Some(fixed) = run.as_ref().and_then(|r| r.with_dashes_before(&arg)) {
                format!("unexpected argument '{arg}': put the command after `--`: {fixed}")
            } else {
                first_line(e)
            }
        }
        ErrorKind::MissingRequiredArgument => {
            let missing = missing_args(e);
            let no_command = missing.iter().any(|m| m.contains("<CMD>"));
            match run.as_ref().map(RunLine::name) {
                Some(Some(name)) if no_command && missing.len() == 1 => format!(
                    "no command to run: put it after `--`, e.g. jobwatch run {name} -- make -j8"
                ),
                Some(None) if no_command => "no job name and no command to run: \
                     give both, the command after `--`, e.g. jobwatch run build -- make -j8"
                    .to_owned(),
                _ if missing.is_empty() => first_line(e),
                _ => format!(
                    "the following required arguments were not provided: {}",
                    missing.join(", ")
                ),
            }
        }
        _ => first_line(e),
    }
}

/// clap's message without its `error: ` prefix, its indented detail lines
/// (e.g. the arguments concerned) joined to it, and no usage block.
fn first_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut lines = text.lines().skip_while(|l| l.trim().is_empty());
    let Some(first) = lines.next() else {
        return "invalid arguments".to_owned();
    };
    let first = first.trim_start_matches("error: ").trim_end_matches(':');
    let details: Vec<&str> = lines
        .take_while(|l| l.starts_with(' ') && !l.trim().is_empty())
        .map(str::trim)
        .collect();
    if details.is_empty() {
        first.to_owned()
    } else {
        format!("{first}: {}", details.join(", "))
    }
}

/// One string from the error's context.
fn context(e: &clap::Error, kind: ContextKind) -> Option<String> {
    match e.get(kind)? {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::Strings(v) => v.first().cloned(),
        _ => None,
    }
}

/// The arguments a `MissingRequiredArgument` error names.
fn missing_args(e: &clap::Error) -> Vec<String> {
    match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::Strings(v)) => v.clone(),
        Some(ContextValue::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// The `run ...` part of a command line, as clap would read it.
struct RunLine<'a> {
    /// From `run` on.
    args: &'a [String],
    /// Where each positional argument (NAME, then what should be CMD) is.
    positionals: Vec<usize>,
}

impl<'a> RunLine<'a> {
    /// The `run` subcommand in `argv`, if that is the command.
    fn find(argv: &'a [String]) -> Option<Self> {
        let cli = Cli::command();
        let takes_value = |long: &str, sub: Option<&clap::Command>| {
            let args = cli
                .get_arguments()
                .chain(sub.into_iter().flat_map(|s| s.get_arguments()));
            args.filter(|a| a.get_long() == Some(long))
                .any(|a| a.get_action().takes_values() && !a.is_require_equals_set())
        };
        // Global options (e.g. `--dir D`) may come before the subcommand.
        let mut i = 1;
        while i < argv.len() && argv[i].starts_with('-') {
            let long = argv[i].trim_start_matches('-');
            i += if !long.contains('=') && takes_value(long, None) {
                2
            } else {
                1
            };
        }
        if argv.get(i).map(String::as_str) != Some("run") {
            return None;
        }
        let run_cmd = cli.find_subcommand("run");
        let args = &argv[i..];
        let mut positionals = Vec::new();
        let mut j = 1;
        while j < args.len() {
            let a = &args[j];
            if a == "--" {
                break;
            }
            if let Some(long) = a.strip_prefix("--") {
                j += if !long.contains('=') && takes_value(long, run_cmd) {
                    2
                } else {
                    1
                };
                continue;
            }
            if !a.starts_with('-') || a == "-" {
                positionals.push(j);
            }
            j += 1;
        }
        Some(Self { args, positionals })
    }

    /// The job name, if one was given.
    fn name(&self) -> Option<&str> {
        self.positionals.first().map(|&i| self.args[i].as_str())
    }

    /// The command line with `--` put before `arg`, when `arg` is the first
    /// argument after the job name: what the caller meant.
    fn with_dashes_before(&self, arg: &str) -> Option<String> {
        let &at = self.positionals.get(1)?;
        if self.args[at] != arg {
            return None;
        }
        let mut words = vec!["jobwatch".to_owned()];
        words.extend(self.args[..at].iter().map(|a| shell_quote(a)));
        words.push("--".to_owned());
        words.extend(self.args[at..].iter().map(|a| shell_quote(a)));
        Some(words.join(" "))
    }
}

/// `s` as a shell would need it typed: as is when it holds nothing special,
/// else in single quotes.
fn shell_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn message_for(args: &[&str]) -> String {
        let argv: Vec<OsString> = args.iter().map(OsString::from).collect();
        let e = Cli::try_parse_from(&argv).expect_err("a usage error");
        message(&e, &argv)
    }

    #[test]
    fn a_command_without_dashes_gets_them_in_the_fix() {
        assert_eq!(
            message_for(&["jobwatch", "run", "n", "true"]),
            "unexpected argument 'true': put the command after `--`: jobwatch run n -- true"
        );
        let m = message_for(&[
            "jobwatch",
            "--dir",
            "/j",
            "run",
            "--grace",
            "1s",
            "n",
            "--detach",
            "sh",
            "-c",
            "echo 'hi'",
        ]);
        assert!(
            m.ends_with(r"jobwatch run --grace 1s n --detach -- sh -c 'echo '\''hi'\'''"),
            "{m}"
        );
    }

    #[test]
    fn a_missing_command_says_where_it_goes() {
        for args in [
            &["jobwatch", "run", "n"][..],
            &["jobwatch", "run", "n", "--"],
        ] {
            let m = message_for(args);
            assert!(m.starts_with("no command to run: put it after `--`"), "{m}");
            assert!(m.contains("jobwatch run n -- "), "{m}");
        }
    }

    #[test]
    fn missing_arguments_are_named_not_cut_off() {
        let m = message_for(&["jobwatch", "run"]);
        assert!(m.starts_with("no job name and no command"), "{m}");
        assert!(m.contains("jobwatch run build -- make"), "{m}");
        let m = message_for(&["jobwatch", "kill"]);
        assert!(m.ends_with("not provided: <NAME>"), "{m}");
    }

    #[test]
    fn an_option_where_a_name_goes_hints_at_names() {
        let m = message_for(&["jobwatch", "status", "--bogus"]);
        assert!(m.contains("'--bogus'") && m.contains("job name"), "{m}");
        let m = message_for(&["jobwatch", "kill", "a", "b"]);
        assert_eq!(m, "unexpected argument 'b' found");
    }

    #[test]
    fn quoting_leaves_plain_words_alone() {
        assert_eq!(shell_quote("make"), "make");
        assert_eq!(shell_quote("-j8"), "-j8");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
