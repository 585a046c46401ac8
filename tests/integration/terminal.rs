//! The terminal experience: `wait`'s spinner (under a pseudo-terminal from
//! util-linux `script`; reported as not run where it is missing), `NO_COLOR`, shell completions and
//! the examples in every command's `--help`.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::support::*;

/// Whether util-linux `script` can give a command a pseudo-terminal here;
/// if not, the test reports itself as not run (a failure under `CI=true`,
/// where .ci/run installs it).
fn have_script() -> bool {
    let works = match Command::new("script")
        .args(["-qec", "true", "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(format!(
            "`script -qec true /dev/null` failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
        Err(e) => Err(format!(
            "util-linux `script` is not installed ({e}): apt-get install bsdutils"
        )),
    };
    runnable(works).is_some()
}

/// `script` running `jobwatch --dir DIR ARGS...` on a pseudo-terminal,
/// everything it shows flushed to `typescript` as it goes.
fn on_terminal(env: &Env, args: &str, typescript: &Path, vars: &[(&str, &str)]) -> Command {
    let line = format!("'{}' --dir '{}' {args}", bin().display(), env.dir.display());
    let mut cmd = env.other("script");
    cmd.arg("-qfec")
        .arg(line)
        .arg(typescript)
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

fn shown(typescript: &Path) -> String {
    String::from_utf8_lossy(&fs::read(typescript).unwrap_or_default()).into_owned()
}

/// Whether `s` holds an SGR (colour or weight) escape: ESC [ digits;… m.
fn has_sgr(s: &str) -> bool {
    s.split('\x1b').skip(1).any(|rest| {
        let Some(params) = rest.strip_prefix('[') else {
            return false;
        };
        let end = params
            .find(|c: char| !(c.is_ascii_digit() || c == ';'))
            .unwrap_or(params.len());
        params[end..].starts_with('m')
    })
}

/// Extra environment variables for one case.
type Vars = &'static [(&'static str, &'static str)];

/// A spinner frame shows the waited time as `00:00:SS`.
const FRAME: &str = "00:00:0";

#[test]
fn wait_on_a_terminal_shows_names_elapsed_time_and_the_last_log_line() {
    if !have_script() {
        return;
    }
    let env = Env::new();
    let go = env.scratch("spin.go");
    let job = sh(&format!(
        "echo compiling-module-7; while [ ! -e '{}' ]; do sleep 0.02; done",
        go.display()
    ));
    env.detach("spin", &[], &job);
    eventually("the job printed its line", || {
        env.log("spin").contains("compiling-module-7")
    });
    let typescript = env.scratch("spin.typescript");
    let waiter = ChildGuard::spawn(on_terminal(&env, "wait spin", &typescript, &[]));
    eventually(
        "the spinner shows the job, the time and its log line",
        || {
            let s = shown(&typescript);
            s.contains("spin") && s.contains(FRAME) && s.contains("compiling-module-7")
        },
    );
    env.release("spin");
    let out = waiter.finish();
    assert_code(&out, 0);
    let s = shown(&typescript);
    let result = s.rfind("spin: success").expect("the result is printed");
    let last_frame = s.rfind(FRAME).unwrap();
    let clear = s.rfind("\x1b[2K").expect("the spinner line is cleared");
    assert!(
        last_frame < clear && clear < result,
        "the spinner is cleared before the result: {s:?}"
    );
    assert!(has_sgr(&s[..result]), "the spinner is coloured: {s:?}");
}

#[test]
fn no_color_term_dumb_quiet_and_json_change_or_drop_the_spinner() {
    if !have_script() {
        return;
    }
    let env = Env::new();
    assert_code(&env.run("done", &["--quiet"], &["true"]), 0);
    let cases: [(&str, Vars, bool); 4] = [
        ("wait done", &[("NO_COLOR", "1")], true),
        ("wait done", &[("TERM", "dumb")], false),
        ("wait done --quiet", &[], false),
        ("wait done --json", &[], false),
    ];
    for (i, (args, vars, spinner)) in cases.into_iter().enumerate() {
        let typescript = env.scratch(&format!("case{i}.typescript"));
        let out = output_of(on_terminal(&env, args, &typescript, vars));
        assert_code(&out, 0);
        let s = shown(&typescript);
        assert!(s.contains("success"), "{args} {vars:?}: {s:?}");
        assert_eq!(s.contains(FRAME), spinner, "{args} {vars:?}: {s:?}");
        if vars.contains(&("NO_COLOR", "1")) {
            assert!(!has_sgr(&s), "NO_COLOR: no colour at all: {s:?}");
        }
    }
}

#[test]
fn help_has_colour_on_a_terminal_unless_no_color_is_set() {
    if !have_script() {
        return;
    }
    let env = Env::new();
    for (vars, coloured) in [(&[][..], true), (&[("NO_COLOR", "1")][..], false)] {
        let typescript = env.scratch("help.typescript");
        let out = output_of(on_terminal(&env, "wait --help", &typescript, vars));
        assert_code(&out, 0);
        let s = shown(&typescript);
        assert!(s.contains("Examples:"), "{s:?}");
        assert_eq!(has_sgr(&s), coloured, "{vars:?}: {s:?}");
    }
}

#[test]
fn wait_without_a_terminal_prints_no_spinner_bytes() {
    let env = Env::new();
    env.detach("plain", &[], &env.gated("plain", 0));
    let waiter = env.spawn(&["wait", "plain"]);
    env.release("plain");
    let out = waiter.finish();
    assert_code(&out, 0);
    for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        assert!(
            !bytes.contains(&b'\r') && !bytes.contains(&0x1b),
            "{stream} has terminal control bytes\n{}",
            describe(&out)
        );
    }
}

#[test]
fn gc_on_a_terminal_prints_a_line_per_item_and_a_summary() {
    if !have_script() {
        return;
    }
    let env = Env::new();
    for _ in 0..3 {
        assert_code(&env.run("h", &["--quiet"], &["true"]), 0);
    }
    let typescript = env.scratch("gc.typescript");
    let out = output_of(on_terminal(&env, "gc --keep 1", &typescript, &[]));
    assert_code(&out, 0);
    let s = shown(&typescript);
    let lines: Vec<&str> = s
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("Script "))
        .collect();
    assert_eq!(lines.len(), 2, "{s:?}");
    assert!(
        lines[0].starts_with("removed archived run history/h/"),
        "{s:?}"
    );
    assert!(
        lines[1].starts_with("gc: removed 1 item(s), freed "),
        "{s:?}"
    );
}

/// The subcommands listed by `jobwatch --help`.
fn subcommands(env: &Env) -> Vec<String> {
    let out = env.jw(&["--help"]);
    assert_code(&out, 0);
    let text = stdout(&out);
    let list = text
        .split("Commands:")
        .nth(1)
        .expect("--help lists the commands");
    list.lines()
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect()
}

#[test]
fn every_subcommand_help_shows_examples() {
    let env = Env::new();
    let commands = subcommands(&env);
    for expected in ["run", "wait", "status", "ls", "gc", "completions"] {
        assert!(commands.iter().any(|c| c == expected), "{commands:?}");
    }
    for command in &commands {
        let out = env.jw(&[command, "--help"]);
        assert_code(&out, 0);
        let text = stdout(&out);
        let examples = text
            .split("Examples:")
            .nth(1)
            .unwrap_or_else(|| panic!("`{command} --help` has no Examples:\n{text}"));
        assert!(
            examples.contains(&format!("jobwatch {command}")),
            "`{command} --help` examples do not show the command:\n{text}"
        );
    }
}

#[test]
fn completions_for_each_shell_name_the_subcommands() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish"] {
        // No jobs directory is needed to print a script.
        let mut cmd = env.bare();
        cmd.args(["completions", shell]).env_remove("HOME");
        let out = output_of(cmd);
        assert_code(&out, 0);
        let script = stdout(&out);
        for word in ["wait", "gc", "completions", "older-than"] {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
        if shell == "bash" && Command::new("bash").arg("--version").output().is_ok() {
            let path = env.scratch("jobwatch.bash");
            fs::write(&path, &script).unwrap();
            let check = output_of({
                let mut c = env.other("bash");
                c.arg("-n").arg(&path);
                c
            });
            assert_code(&check, 0);
        }
    }
    let out = env.jw(&["completions", "tcsh"]);
    assert_usage_error(&out, &["tcsh"]);
}

#[test]
fn ls_on_a_terminal_has_a_runs_column() {
    if !have_script() {
        return;
    }
    let env = Env::new();
    for _ in 0..3 {
        assert_code(&env.run("thrice", &["--quiet"], &["true"]), 0);
    }
    let typescript = env.scratch("ls.typescript");
    let out = output_of(on_terminal(&env, "ls", &typescript, &[]));
    assert_code(&out, 0);
    let s = shown(&typescript);
    let header = s.lines().find(|l| l.starts_with("NAME")).expect("a header");
    let row = s.lines().find(|l| l.starts_with("thrice")).expect("a row");
    let column = header.split_whitespace().position(|w| w == "RUNS");
    let column = column.unwrap_or_else(|| panic!("no RUNS column: {s:?}"));
    assert_eq!(row.split_whitespace().nth(column), Some("2"), "{s:?}");
}
