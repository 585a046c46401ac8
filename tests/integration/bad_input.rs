//! Bad input: names, durations, options, unsafe directories and damaged job
//! files all give exit code 2 and an error on stderr that names the problem.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::support::*;

/// The scratch dir holds nothing but what the test made: an invalid name
/// must never have produced a file outside the jobs dir.
#[track_caller]
fn assert_nothing_escaped(env: &Env, allowed: &[&str]) {
    for entry in fs::read_dir(env.root()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name == "jobs" || allowed.contains(&name.as_str()),
            "unexpected file {name:?} next to the jobs dir"
        );
    }
    if env.dir.exists() {
        let inside: Vec<_> = fs::read_dir(&env.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(
            inside.is_empty(),
            "no job files for an invalid name: {inside:?}"
        );
    }
}

#[test]
fn invalid_names_are_refused_with_exit_2_by_every_command() {
    let env = Env::new();
    let long = "a".repeat(65);
    let names = [
        "../x",
        "a/b",
        ".hidden",
        "",
        long.as_str(),
        "a b",
        "-x",
        "..",
    ];
    for name in names {
        let marker = "touch \"$T/ran\"";
        let cases: Vec<Vec<&str>> = vec![
            vec!["run", name, "--", "sh", "-c", marker],
            vec!["run", name, "--detach", "--", "sh", "-c", marker],
            vec!["wait", name],
            vec!["status", name],
            vec!["kill", name],
            vec!["logs", name],
            vec!["beat", name],
        ];
        for args in cases {
            let out = env.jw(&args);
            assert_usage_error(&out, &[]);
            let err = stderr(&out).to_lowercase();
            assert!(
                err.contains("name"),
                "{args:?}: stderr should name the problem\n{}",
                describe(&out)
            );
            assert!(
                !env.scratch("ran").exists(),
                "{args:?}: the command must not run"
            );
        }
    }
    assert_nothing_escaped(&env, &[]);
}

#[test]
fn a_64_character_name_is_accepted() {
    let env = Env::new();
    let name = "b".repeat(64);
    assert_code(&env.run(&name, &[], &["true"]), 0);
    assert_eq!(env.await_status(&name), "SUCCESS");
}

#[test]
fn bad_durations_are_refused_with_exit_2() {
    let env = Env::new();
    let cases: Vec<Vec<&str>> = vec![
        vec!["run", "d", "--timeout", "10x", "--", "true"],
        vec!["run", "d", "--stale", "10x", "--", "true"],
        vec!["run", "d", "--heartbeat", "10x", "--", "true"],
        vec!["run", "d", "--grace", "10x", "--", "true"],
        vec!["wait", "d", "--timeout", "10x"],
        vec!["wait", "d", "--stale", "10x"],
        vec!["wait", "d", "--poll", "10x"],
        vec!["wait", "d", "--grace", "10x"],
        vec!["kill", "d", "--grace", "10x"],
    ];
    for args in cases {
        let out = env.jw(&args);
        assert_usage_error(&out, &["10x"]);
    }
    assert!(!env.file("d", ".status").exists(), "nothing ran");
}

#[test]
fn unknown_options_and_subcommands_are_refused_with_exit_2() {
    let env = Env::new();
    let cases: Vec<Vec<&str>> = vec![
        vec!["run", "u", "--bogus", "--", "true"],
        vec!["wait", "u", "--bogus"],
        vec!["status", "--bogus"],
        vec!["ls", "--bogus"],
        vec!["kill", "u", "--bogus"],
        vec!["logs", "u", "--bogus"],
        vec!["beat", "u", "--bogus"],
    ];
    for args in cases {
        assert_usage_error(&env.jw(&args), &["--bogus"]);
    }
    assert_usage_error(&env.jw(&["frobnicate"]), &["frobnicate"]);
    assert!(!env.file("u", ".status").exists(), "nothing ran");
}

#[test]
fn an_unknown_liveness_mode_is_refused_with_exit_2() {
    let env = Env::new();
    let out = env.jw(&["run", "l", "--liveness", "sometimes", "--", "true"]);
    assert_usage_error(&out, &["sometimes"]);
}

#[test]
fn unknown_job_names_are_reported_with_exit_2() {
    let env = Env::new();
    assert_code(&env.run("exists", &[], &["true"]), 0);
    for cmd in ["status", "wait", "kill", "logs"] {
        let out = env.jw(&[cmd, "nosuchjob"]);
        assert_usage_error(&out, &["nosuchjob"]);
    }
}

/// Every command refuses `dir` with exit 2, names it, and runs nothing.
#[track_caller]
fn assert_dir_refused(env: &Env, dir: &Path) {
    let shown = dir.to_string_lossy().into_owned();
    let cases: Vec<Vec<&str>> = vec![
        vec!["run", "x", "--", "sh", "-c", "touch \"$T/ran\""],
        vec!["run", "x", "--detach", "--", "sh", "-c", "touch \"$T/ran\""],
        vec!["wait", "x"],
        vec!["status"],
        vec!["ls"],
    ];
    for args in cases {
        let mut cmd = env.bare();
        cmd.arg("--dir").arg(dir).args(&args);
        let out = output_of(cmd);
        assert_usage_error(&out, &[]);
        assert!(
            stderr(&out).contains(&shown),
            "{args:?}: stderr should name {shown}\n{}",
            describe(&out)
        );
        assert!(
            !env.scratch("ran").exists(),
            "{args:?}: the command must not run"
        );
    }
}

#[test]
fn a_jobs_dir_that_others_can_write_is_refused() {
    let env = Env::new();
    let dir = env.scratch("open");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    assert_dir_refused(&env, &dir);
    let left: Vec<_> = fs::read_dir(&dir).unwrap().collect();
    assert!(left.is_empty(), "nothing written into the unsafe dir");
}

#[test]
fn a_jobs_dir_owned_by_another_user_is_refused() {
    let env = Env::new();
    if rustix::process::geteuid().is_root() {
        let dir = env.scratch("foreign");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let mut chown = env.other("chown");
        chown.arg("65534").arg(&dir);
        assert_code(&output_of(chown), 0);
        assert_dir_refused(&env, &dir);
    } else {
        assert_dir_refused(&env, Path::new("/"));
    }
}

/// Runs a real job so that every file is valid, then lets the test damage one.
fn finished_job(env: &Env, name: &str) {
    assert_code(&env.run(name, &["--quiet"], &sh("echo fine")), 0);
    assert_eq!(env.await_status(name), "SUCCESS");
}

/// Exactly one stdout line is about `name`, and it says `invalid` with an
/// error that mentions `needle` (the damaged file).
#[track_caller]
fn assert_one_invalid_line(out: &std::process::Output, name: &str, needle: &str) {
    let lines = json_lines(out);
    let about: Vec<_> = lines.iter().filter(|v| v["name"] == name).collect();
    assert_eq!(about.len(), 1, "one line for {name}\n{}", describe(out));
    assert_eq!(about[0]["state"], "invalid", "{}", describe(out));
    let error = about[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(needle),
        "the line's error names {needle:?}\n{}",
        describe(out)
    );
}

#[test]
fn a_garbage_job_json_makes_status_exit_2_naming_job_json() {
    let env = Env::new();
    finished_job(&env, "junk");
    fs::write(
        env.file("junk", ".job.json"),
        b"{\"name\": \"junk\", garbage",
    )
    .unwrap();

    let out = env.jw(&["status", "junk"]);
    assert_usage_error(&out, &["job.json"]);
    assert_eq!(json_lines(&out).len(), 1, "{}", describe(&out));
    assert_one_invalid_line(&out, "junk", "junk.job.json");

    let (w, _) = env.wait(&["junk"]);
    assert_usage_error(&w, &["job.json"]);
}

#[test]
fn a_truncated_status_file_makes_status_exit_2_naming_status() {
    let env = Env::new();
    finished_job(&env, "cut");
    fs::write(env.file("cut", ".status"), b"SUCC").unwrap();

    let out = env.jw(&["status", "cut"]);
    assert_usage_error(&out, &["status"]);
    assert_eq!(json_lines(&out).len(), 1, "{}", describe(&out));
    assert_one_invalid_line(&out, "cut", "cut.status");
}

#[test]
fn ls_reports_an_invalid_job_and_still_lists_the_others() {
    let env = Env::new();
    finished_job(&env, "good");
    finished_job(&env, "junk");
    fs::write(env.file("junk", ".job.json"), b"not json at all").unwrap();

    let out = env.jw(&["ls"]);
    assert_usage_error(&out, &["job.json"]);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2, "{}", describe(&out));
    assert_eq!(line_for(&lines, "good")["state"], "success");
    assert_one_invalid_line(&out, "junk", "junk.job.json");
}
