//! Finding `jobwatch run NAME … --detach` in a Bash command, so jobs an
//! agent starts from its shell are tracked like those it starts through
//! MCP.
//!
//! Words are split with the `shell-words` crate (POSIX quoting, comments);
//! it does not know shell operators, so simple commands are then cut at
//! words that are operators (`&&`, `||`, `;`, `|`, `&`, grouping) or end in
//! `;`, and at newlines outside quotes. That covers what agents write
//! (`cd x && jobwatch run build --detach -- make`); it is not a shell
//! parser: a `jobwatch` hidden in `$(…)` or an alias is not seen.

/// One `jobwatch run` found in a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCall {
    /// The job name (not validated here).
    pub name: String,
    /// Whether `--detach` was given: only a detached job outlives the
    /// command.
    pub detach: bool,
    /// The jobs directory it names: `--dir`, else a `JOBWATCH_DIR=`
    /// assignment before it.
    pub dir: Option<String>,
}

/// Options of `run` (and the global `--dir`) that take a value.
const VALUE_OPTIONS: &[&str] = &[
    "--dir",
    "--timeout",
    "--stale",
    "--heartbeat",
    "--liveness",
    "--grace",
    "--retries",
    "--backoff",
    "--backoff-max",
    "--breaker",
    "--max-failures",
    "--cooldown",
];

/// Words that may stand before the program of a simple command.
const PREFIXES: &[&str] = &["exec", "nohup", "command", "time", "env", "builtin"];

/// Every `jobwatch run` in `command`, in order. Unbalanced quotes make the
/// command unreadable: an error naming why.
pub fn run_calls(command: &str) -> Result<Vec<RunCall>, String> {
    let mut calls = Vec::new();
    for line in logical_lines(command)? {
        for simple in simple_commands(&line) {
            calls.extend(run_call(&simple));
        }
    }
    Ok(calls)
}

/// Whether any simple command of `command` runs `jobwatch` (any
/// subcommand). An unreadable command counts as one: callers then leave
/// it alone.
pub fn invokes_jobwatch(command: &str) -> bool {
    let Ok(lines) = logical_lines(command) else {
        return true;
    };
    lines
        .iter()
        .flat_map(|l| simple_commands(l))
        .any(|words| program(&words).is_some_and(|(_, p)| is_jobwatch(p)))
}

fn is_jobwatch(program: &str) -> bool {
    program.rsplit('/').next() == Some("jobwatch")
}

/// The program of a simple command (after variable assignments and
/// prefixes like `exec`), its index, and the `JOBWATCH_DIR` assigned
/// before it.
fn program(words: &[String]) -> Option<(usize, &str)> {
    let i = words
        .iter()
        .position(|w| assignment(w).is_none() && !PREFIXES.contains(&w.as_str()))?;
    Some((i, words[i].as_str()))
}

/// The command's lines, each split into words; a quoted string that spans
/// lines keeps its lines together.
fn logical_lines(command: &str) -> Result<Vec<Vec<String>>, String> {
    let mut lines = Vec::new();
    let mut pending = String::new();
    for line in command.split('\n') {
        if !pending.is_empty() {
            pending.push('\n');
        }
        pending.push_str(line);
        if let Ok(words) = shell_words::split(&pending) {
            lines.push(words);
            pending.clear();
        }
    }
    if pending.trim().is_empty() {
        Ok(lines)
    } else {
        shell_words::split(&pending)
            .map(|_| lines)
            .map_err(|e| format!("cannot split the command into words: {e}"))
    }
}

fn is_operator(word: &str) -> bool {
    matches!(
        word,
        "&&" | "||" | ";" | "|" | "&" | "(" | ")" | "{" | "}" | "!" | "then" | "do" | "else"
    )
}

/// Cuts a line's words into simple commands: at operator words, and at
/// `;`, `|` and `&` inside words (`make;jobwatch`: the quoting that would
/// make them literal is gone after splitting, and a false find is caught
/// later, when the run must match what the call printed).
fn simple_commands(words: &[String]) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new()];
    for w in words {
        if is_operator(w) {
            out.push(Vec::new());
            continue;
        }
        let mut pieces = w.split([';', '|', '&']).peekable();
        while let Some(piece) = pieces.next() {
            if !piece.is_empty() {
                out.last_mut().expect("never empty").push(piece.to_owned());
            }
            if pieces.peek().is_some() {
                out.push(Vec::new());
            }
        }
    }
    out.retain(|c| !c.is_empty());
    out
}

/// The `jobwatch run` of one simple command, if it is one.
fn run_call(words: &[String]) -> Option<RunCall> {
    let (i, program) = program(words)?;
    if !is_jobwatch(program) {
        return None;
    }
    let env_dir = words[..i]
        .iter()
        .rev()
        .filter_map(|w| assignment(w))
        .find(|(key, _)| *key == "JOBWATCH_DIR")
        .map(|(_, value)| value.to_owned());
    let mut call = parse_jobwatch_args(&words[i + 1..])?;
    call.dir = call.dir.or(env_dir);
    Some(call)
}

fn assignment(word: &str) -> Option<(&str, &str)> {
    let (key, value) = word.split_once('=')?;
    let valid = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    valid.then_some((key, value))
}

/// `[--dir D] run [options] NAME [options] [-- CMD…]`.
fn parse_jobwatch_args(args: &[String]) -> Option<RunCall> {
    let mut dir = None;
    let mut name = None;
    let mut detach = false;
    let mut seen_run = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--" {
            break;
        }
        if let Some((key, value)) = a.split_once('=').filter(|_| a.starts_with("--")) {
            if key == "--dir" {
                dir = Some(value.to_owned());
            }
            continue;
        }
        if VALUE_OPTIONS.contains(&a.as_str()) {
            let value = it.next()?;
            if a == "--dir" {
                dir = Some(value.clone());
            }
            continue;
        }
        if a == "--detach" {
            detach = true;
            continue;
        }
        if a.starts_with('-') {
            continue;
        }
        if !seen_run {
            if a != "run" {
                return None;
            }
            seen_run = true;
        } else if name.is_none() {
            name = Some(a.clone());
        }
    }
    Some(RunCall {
        name: name?,
        detach,
        dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, detach: bool, dir: Option<&str>) -> RunCall {
        RunCall {
            name: name.into(),
            detach,
            dir: dir.map(str::to_owned),
        }
    }

    #[test]
    fn a_detached_run_is_found_with_its_name() {
        assert_eq!(
            run_calls("jobwatch run build --detach --timeout 30m -- make -j8").unwrap(),
            vec![call("build", true, None)]
        );
        assert_eq!(
            run_calls("jobwatch run --detach --timeout=30m --stale 2m build -- make").unwrap(),
            vec![call("build", true, None)]
        );
        assert_eq!(
            run_calls("/usr/local/bin/jobwatch run x -- true").unwrap(),
            vec![call("x", false, None)]
        );
    }

    #[test]
    fn words_after_the_double_dash_are_the_job_s_own() {
        assert_eq!(
            run_calls("jobwatch run t -- jobwatch run inner --detach -- true").unwrap(),
            vec![call("t", false, None)]
        );
        assert_eq!(
            run_calls("jobwatch run t -- sh -c 'x --detach'").unwrap(),
            vec![call("t", false, None)]
        );
    }

    #[test]
    fn runs_are_found_between_shell_operators_and_lines() {
        let cmd = "cd /src && JOBWATCH_DIR=/tmp/j jobwatch run a --detach -- make; \
                   jobwatch --dir /d run b --detach -- x|tee log\n\
                   echo 'multi\nline' ; nohup jobwatch run c --detach --dir=/e -- y &";
        assert_eq!(
            run_calls(cmd).unwrap(),
            vec![
                call("a", true, Some("/tmp/j")),
                call("b", true, Some("/d")),
                call("c", true, Some("/e")),
            ]
        );
        assert_eq!(
            run_calls("make;jobwatch run z --detach -- true # jobwatch run commented --detach")
                .unwrap(),
            vec![call("z", true, None)]
        );
    }

    #[test]
    fn other_commands_and_other_subcommands_are_not_runs() {
        for cmd in [
            "echo jobwatch run x --detach",
            "jobwatch wait build",
            "jobwatch status",
            "jobwatch run",
            "jobwatch run --timeout",
            "grep 'jobwatch run x --detach' notes.txt",
            "",
        ] {
            assert_eq!(run_calls(cmd).unwrap(), vec![], "{cmd}");
        }
    }

    #[test]
    fn only_a_command_that_runs_jobwatch_invokes_it() {
        assert!(invokes_jobwatch("cd x && jobwatch status"));
        assert!(invokes_jobwatch("X=1 exec /opt/bin/jobwatch wait a"));
        assert!(
            invokes_jobwatch("echo 'unbalanced"),
            "unreadable counts as yes"
        );
        assert!(!invokes_jobwatch("make -C /tmp/jobwatch-it-1/src"));
        assert!(!invokes_jobwatch("grep jobwatch notes.txt"));
    }

    #[test]
    fn unbalanced_quotes_are_an_error_not_a_guess() {
        assert!(run_calls("jobwatch run 'x --detach").is_err());
    }
}
