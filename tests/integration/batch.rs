//! `jobwatch batch`: plans expanded into ordinary jobs, worktrees, judges,
//! costs, dependencies, halt, resume, Ctrl-C, malformed plans, and the
//! example plan end to end.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::*;

/// A command list as YAML (JSON is YAML).
fn argv<S: AsRef<str>>(args: &[S]) -> String {
    serde_json::to_string(&args.iter().map(|s| s.as_ref()).collect::<Vec<_>>()).unwrap()
}

/// `jobwatch batch` on `plan` (a file in the test's scratch dir), with
/// worktrees made inside the scratch dir.
fn batch_cmd(env: &Env, plan: &Path, args: &[&str]) -> Command {
    let mut cmd = env.cmd();
    cmd.arg("batch")
        .arg(plan)
        .args(args)
        .env("TMPDIR", env.root());
    cmd
}

fn write_plan(env: &Env, text: &str) -> PathBuf {
    let path = env.scratch("plan.yaml");
    fs::write(&path, text).unwrap();
    path
}

/// Runs a plan with `--json`; its output and its job lines by name.
#[track_caller]
fn run_batch(env: &Env, text: &str, args: &[&str]) -> (Output, Vec<Value>) {
    let plan = write_plan(env, text);
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = output_of(batch_cmd(env, &plan, &all));
    let lines = json_lines(&out);
    (out, lines)
}

fn jobs(lines: &[Value]) -> Vec<&Value> {
    lines.iter().filter(|l| l["type"] == "job").collect()
}

fn summary(lines: &[Value]) -> &Value {
    lines
        .iter()
        .find(|l| l["type"] == "summary")
        .unwrap_or_else(|| panic!("no summary line in {lines:#?}"))
}

#[track_caller]
fn verdicts(lines: &[Value]) -> Vec<(String, String)> {
    jobs(lines)
        .iter()
        .map(|j| {
            (
                j["name"].as_str().unwrap().to_owned(),
                j["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// A git repository in the scratch dir with `sub/file.txt` committed.
fn git_repo(env: &Env) -> PathBuf {
    let repo = env.scratch("repo");
    fs::create_dir_all(repo.join("sub")).unwrap();
    fs::write(repo.join("sub/file.txt"), "committed\n").unwrap();
    git(env, &repo, &["init", "-q", "."]);
    git(env, &repo, &["add", "-A"]);
    git(
        env,
        &repo,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-qm",
            "one",
        ],
    );
    repo
}

#[track_caller]
fn git(env: &Env, dir: &Path, args: &[&str]) -> String {
    let mut cmd = env.other("git");
    cmd.arg("-C").arg(dir).args(args).env_remove("GIT_DIR");
    let out = output_of(cmd);
    assert_code(&out, 0);
    stdout(&out)
}

fn worktree_count(env: &Env, repo: &Path) -> usize {
    git(env, repo, &["worktree", "list", "--porcelain"])
        .lines()
        .filter(|l| l.starts_with("worktree "))
        .count()
}

#[test]
fn a_matrix_plan_expands_into_ordinary_jobs_named_by_their_template() {
    let env = Env::new();
    let plan = "matrix: {agent: [a, b], task: [t1, t2]}\nrepeat: 2\njobs:\n  \
                setup: {run: [true]}\n  \
                solve:\n    after: [setup]\n    name: \"{task}-{agent}-{repeat}\"\n    \
                run: [sh, -c, \"echo {agent} {task} {repeat}\"]\n";
    let (out, lines) = run_batch(&env, plan, &[]);
    assert_code(&out, 0);
    assert_eq!(stderr(&out), "", "no progress without a terminal");
    let names: Vec<String> = verdicts(&lines).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        [
            "setup", "t1-a-1", "t2-a-1", "t1-b-1", "t2-b-1", "t1-a-2", "t2-a-2", "t1-b-2", "t2-b-2"
        ]
    );
    assert!(jobs(&lines).iter().all(|j| j["verdict"] == "pass"));
    let s = summary(&lines);
    assert_eq!(
        (s["runs"].as_i64(), s["passes"].as_i64()),
        (Some(9), Some(9))
    );
    assert_eq!(s["rows"].as_array().unwrap().len(), 5);
    assert_eq!(s["exit_code"], 0);
    // Every job is an ordinary job with its own log.
    assert!(env.log("t2-b-1").contains("b t2 1"));
    let status = env.jw(&["status", "t2-b-1", "--json"]);
    assert_code(&status, 0);
    assert_eq!(json_line(&status)["state"], "success");
    // --dry-run shows the same expansion and runs nothing.
    let plan_path = env.scratch("plan.yaml");
    let dry = output_of(batch_cmd(&env, &plan_path, &["--dry-run"]));
    assert_code(&dry, 0);
    let planned = json_lines(&dry);
    assert_eq!(planned.len(), 9);
    assert_eq!(planned[4]["name"], "t2-b-1");
    assert_eq!(
        planned[4]["run"],
        serde_json::json!(["sh", "-c", "echo b t2 1"])
    );
    assert_eq!(planned[4]["after"], serde_json::json!(["setup"]));
}

#[test]
fn each_job_runs_in_its_own_worktree_which_is_removed_after_it() {
    let env = Env::new();
    let repo = git_repo(&env);
    let plan_path = repo.join("sub/plan.yaml");
    // Written after the commit: the worktrees do not have it, the jobs
    // run in their copy of sub/.
    fs::write(
        &plan_path,
        "repeat: 3\nworktree: {repo: .}\njobs:\n  w:\n    name: \"w-{repeat}\"\n    \
         run: [sh, -c, \"pwd > \\\"$T/pwd-{repeat}\\\"; cat file.txt; echo dirty > file.txt; touch new\"]\n",
    )
    .unwrap();
    let out = output_of(batch_cmd(&env, &plan_path, &["--json"]));
    assert_code(&out, 0);
    let mut dirs = Vec::new();
    for r in 1..=3 {
        let pwd = fs::read_to_string(env.scratch(&format!("pwd-{r}"))).unwrap();
        let pwd = PathBuf::from(pwd.trim());
        assert!(
            pwd.ends_with(Path::new(&format!("w-{r}/sub"))),
            "{}",
            pwd.display()
        );
        assert!(!pwd.exists(), "worktree {} was removed", pwd.display());
        dirs.push(pwd);
        assert!(env.log(&format!("w-{r}")).contains("committed"));
    }
    dirs.dedup();
    assert_eq!(dirs.len(), 3, "one worktree per job");
    assert_eq!(worktree_count(&env, &repo), 1, "git forgot them all");
    assert_eq!(
        fs::read_to_string(repo.join("sub/file.txt")).unwrap(),
        "committed\n"
    );
}

#[test]
fn keep_failed_keeps_the_worktree_of_a_failed_job_only() {
    let env = Env::new();
    let repo = git_repo(&env);
    let plan = format!(
        "worktree: {{repo: {}, keep: failed}}\njobs:\n  ok: {{run: [true]}}\n  bad: {{run: [sh, -c, \"echo evidence > out.txt; exit 3\"]}}\n",
        repo.display()
    );
    let (out, lines) = run_batch(&env, &plan, &[]);
    assert_code(&out, 1);
    let bad = line_for(&lines, "bad");
    assert_eq!(bad["verdict"], "fail");
    assert_eq!(bad["exit_code"], 3);
    let kept = PathBuf::from(bad["worktree"].as_str().expect("a kept worktree"));
    assert_eq!(
        fs::read_to_string(kept.join("out.txt")).unwrap(),
        "evidence\n"
    );
    assert_eq!(line_for(&lines, "ok")["worktree"], Value::Null);
    assert_eq!(
        worktree_count(&env, &repo),
        2,
        "the main checkout and the kept one"
    );
}

#[test]
fn a_worktree_plan_outside_a_repository_or_with_an_unknown_ref_is_refused() {
    let env = Env::new();
    let plan = write_plan(&env, "worktree: {repo: .}\njobs:\n  a: {run: [true]}\n");
    let out = output_of(batch_cmd(&env, &plan, &[]));
    assert_usage_error(&out, &["is not in a git repository"]);
    let repo = git_repo(&env);
    let plan = write_plan(
        &env,
        &format!(
            "worktree: {{repo: {}, ref: nope}}\njobs:\n  a: {{run: [true]}}\n",
            repo.display()
        ),
    );
    let out = output_of(batch_cmd(&env, &plan, &[]));
    assert_usage_error(&out, &["worktree.ref \"nope\" is not a commit"]);
    assert!(!env.file("a", ".job.json").exists(), "nothing ran");
}

#[test]
fn the_judge_decides_the_verdict_and_costs_are_read_from_the_result() {
    let env = Env::new();
    let plan = "matrix: {n: [1, 2, 3]}\njobs:\n  j:\n    \
                run: [sh, -c, \"echo '{\\\"usage\\\": {\\\"usd\\\": 0.{n}}}' > $JOBWATCH_RESULT; test {n} != 3\"]\n    \
                judge: [sh, -c, \"test {n} = 1 && test -n \\\"$JOBWATCH_JUDGED_LOG\\\"\"]\n    \
                cost: usage.usd\n";
    let (out, lines) = run_batch(&env, plan, &[]);
    assert_code(&out, 1);
    assert_eq!(
        verdicts(&lines),
        pairs(&[("j-1", "pass"), ("j-2", "fail"), ("j-3", "fail")])
    );
    let j2 = line_for(&lines, "j-2");
    assert_eq!(j2["outcome"], "success");
    assert_eq!(j2["judge"]["outcome"], "failed");
    let j3 = line_for(&lines, "j-3");
    assert_eq!(j3["outcome"], "failed");
    assert_eq!(j3["judge"], Value::Null, "no judge after a failure");
    assert!(!env.file("j-3.judge", ".status").exists());
    assert_eq!(
        env.await_status("j-1.judge"),
        "SUCCESS",
        "the judge is an ordinary job"
    );
    let s = summary(&lines);
    assert!((s["cost"].as_f64().unwrap() - 0.6).abs() < 1e-9, "{s}");
    assert_eq!(j2["cost"], 0.2);
}

#[test]
fn a_result_file_that_is_a_fifo_never_holds_up_the_batch() {
    // A job may put anything at $JOBWATCH_RESULT; reading a FIFO there
    // would wait forever for a writer (protocol §3: nothing blocks on one).
    let env = Env::new();
    let plan = "jobs:\n  j:\n    \
                run: [sh, -c, \"mkfifo \\\"$JOBWATCH_RESULT\\\"\"]\n    \
                cost: usage.usd\n";
    let (out, lines) = run_batch(&env, plan, &[]);
    assert_code(&out, 0);
    assert_eq!(verdicts(&lines), pairs(&[("j", "pass")]));
    assert_eq!(line_for(&lines, "j")["cost"], Value::Null);
}

#[test]
fn a_dependency_that_did_not_pass_skips_its_dependents() {
    let env = Env::new();
    let plan = "jobs:\n  build: {run: [false]}\n  test: {run: [true], after: [build]}\n  \
                cleanup: {run: [true], after: [\"build:done\"]}\n";
    let (out, lines) = run_batch(&env, plan, &[]);
    assert_code(&out, 1);
    assert_eq!(
        verdicts(&lines),
        pairs(&[("build", "fail"), ("test", "skipped"), ("cleanup", "pass")])
    );
    assert_eq!(
        line_for(&lines, "test")["reason"],
        "dependency build did not pass (fail)"
    );
    assert!(
        !env.file("test", ".job.json").exists(),
        "a skipped job never started"
    );
}

#[test]
fn a_group_runs_its_jobs_one_at_a_time() {
    let env = Env::new();
    let plan = "concurrency: 4\nrepeat: 4\njobs:\n  g: {run: [sh, -c, \"sleep 0.1\"], name: \"g-{repeat}\", group: lock}\n";
    let (out, _) = run_batch(&env, plan, &[]);
    assert_code(&out, 0);
    let mut spans: Vec<(u64, u64)> = (1..=4)
        .map(|r| {
            let rec = env.record(&format!("g-{r}"));
            let start = rec["started_unix_ms"].as_u64().unwrap();
            (start, start + rec["duration_ms"].as_u64().unwrap())
        })
        .collect();
    spans.sort();
    for w in spans.windows(2) {
        assert!(w[1].0 >= w[0].1, "group jobs overlapped: {spans:?}");
    }
}

#[test]
fn halt_now_kills_the_running_jobs_and_skips_the_rest() {
    let env = Env::new();
    let slow = env.gated("never", 0);
    let plan = format!(
        "concurrency: 2\nhalt: {{fail: 1, when: now}}\ndefaults: {{grace: 200ms}}\njobs:\n  \
         fails: {{run: [sh, -c, \"exit 1\"]}}\n  slow: {{run: {}}}\n  later: {{run: [true]}}\n",
        argv(&slow)
    );
    let (out, lines) = run_batch(&env, &plan, &[]);
    assert_code(&out, 1);
    assert_eq!(
        verdicts(&lines),
        pairs(&[("fails", "fail"), ("slow", "killed"), ("later", "skipped")])
    );
    assert!(
        summary(&lines)["halted"]
            .as_str()
            .unwrap()
            .contains("halt.fail is 1")
    );
    assert_eq!(env.await_status("slow"), "FAILED");
    assert_eq!(env.record("slow")["outcome"], "killed");
}

#[test]
fn a_rerun_reuses_finished_jobs_and_rerun_failed_runs_only_the_failures() {
    let env = Env::new();
    let plan = "matrix: {n: [1, 2, 3]}\njobs:\n  j: {run: [sh, -c, \"echo {n} >> \\\"$T/ran\\\"; test {n} != 2\"]}\n";
    let ran = || fs::read_to_string(env.scratch("ran")).unwrap_or_default();
    let (out, _) = run_batch(&env, plan, &[]);
    assert_code(&out, 1);
    assert_eq!(ran().lines().count(), 3);
    let (out, lines) = run_batch(&env, plan, &[]);
    assert_code(&out, 1);
    assert_eq!(ran().lines().count(), 3, "nothing ran again");
    assert!(jobs(&lines).iter().all(|j| j["resumed"] == true));
    assert_eq!(
        line_for(&lines, "j-2")["verdict"],
        "fail",
        "the earlier verdict is kept"
    );
    let (out, lines) = run_batch(&env, plan, &["--rerun", "failed"]);
    assert_code(&out, 1);
    assert_eq!(ran().lines().collect::<Vec<_>>(), ["1", "2", "3", "2"]);
    assert_eq!(line_for(&lines, "j-2")["resumed"], false);
    let (out, _) = run_batch(&env, plan, &["--rerun", "all"]);
    assert_code(&out, 1);
    assert_eq!(ran().lines().count(), 7);
}

#[test]
fn ctrl_c_kills_every_running_job_records_them_killed_and_removes_worktrees() {
    let env = Env::new();
    let repo = git_repo(&env);
    let plan = write_plan(
        &env,
        &format!(
            "concurrency: 2\nrepeat: 3\nworktree: {{repo: {}}}\ndefaults: {{grace: 500ms}}\njobs:\n  \
             s:\n    name: \"s-{{repeat}}\"\n    run: [sh, -c, \"pwd > \\\"$T/wt-{{repeat}}\\\"; echo $$ > \\\"$T/pid-{{repeat}}\\\"; exec sleep 300\"]\n",
            repo.display()
        ),
    );
    let mut batch = ChildGuard::spawn(batch_cmd(&env, &plan, &["--json"]));
    let pids: Vec<i32> = (1..=2)
        .map(|r| read_pid(&env.scratch(&format!("pid-{r}"))))
        .collect();
    assert!(batch.is_running());
    signal(batch.pid(), rustix::process::Signal::INT);
    let out = batch.finish();
    assert_code(&out, exit::KILLED);
    let lines = json_lines(&out);
    assert_eq!(
        verdicts(&lines),
        pairs(&[("s-1", "killed"), ("s-2", "killed"), ("s-3", "skipped")])
    );
    assert_eq!(summary(&lines)["interrupted"], true);
    for (r, pid) in pids.iter().enumerate() {
        let name = format!("s-{}", r + 1);
        assert_eq!(env.record(&name)["outcome"], "killed");
        assert_all_gone(&[("job", *pid)]);
        let wt = fs::read_to_string(env.scratch(&format!("wt-{}", r + 1))).unwrap();
        assert!(!Path::new(wt.trim()).exists(), "worktree {wt} removed");
    }
    assert_eq!(worktree_count(&env, &repo), 1);
}

#[test]
fn malformed_plans_are_refused_with_file_line_and_column() {
    let env = Env::new();
    for (text, needles) in [
        (
            "jobs:\n  a:\n    run: [true]\n    retires: 2\n",
            &["plan.yaml:4:5:", "unknown field `retires`"][..],
        ),
        (
            "jobs:\n  a: {run: [true], timeout: 10}\n",
            &["plan.yaml:2:", "invalid duration"],
        ),
        (
            "jobs:\n  a: {run: [true], after: [b]}\n  b: {run: [true], after: [a]}\n",
            &["plan.yaml:3:", "dependency cycle: a -> b -> a"],
        ),
        (
            "jobs:\n  a: {run: [true], after: [c]}\n",
            &["plan.yaml:2:", "unknown job \"c\""],
        ),
        (
            "jobs:\n  a: {run: [\"{x}\"]}\n",
            &["plan.yaml:2:", "unknown placeholder {x}"],
        ),
        ("jobs: [a, b]\n", &["plan.yaml:1:"]),
    ] {
        let plan = write_plan(&env, text);
        let out = output_of(batch_cmd(&env, &plan, &[]));
        assert_usage_error(&out, needles);
    }
    let plan = write_plan(&env, "jobs:\n  a: {run: [true]}\n");
    let out = output_of(batch_cmd(&env, &plan, &["--report", "out.txt"]));
    assert_usage_error(&out, &["--report out.txt: unknown format"]);
    let out = output_of(batch_cmd(&env, &env.scratch("missing.yaml"), &[]));
    assert_usage_error(&out, &["cannot read plan", "missing.yaml"]);
    assert!(!env.file("a", ".job.json").exists(), "nothing ran");
}

#[test]
fn reports_are_written_as_markdown_and_junit() {
    let env = Env::new();
    let plan = write_plan(&env, "jobs:\n  ok: {run: [true]}\n  bad: {run: [false]}\n");
    let md = env.scratch("out/r.md");
    let xml = env.scratch("out/r.xml");
    fs::create_dir_all(env.scratch("out")).unwrap();
    let out = output_of(batch_cmd(
        &env,
        &plan,
        &[
            "--report",
            md.to_str().unwrap(),
            "--report",
            xml.to_str().unwrap(),
        ],
    ));
    assert_code(&out, 1);
    let md = fs::read_to_string(md).unwrap();
    assert!(md.contains("| job | runs | pass | fail |"), "{md}");
    assert!(md.contains("- `bad`: fail: exit 1"), "{md}");
    let xml = fs::read_to_string(xml).unwrap();
    assert!(
        xml.contains("<testsuites name=") && xml.contains("tests=\"2\" failures=\"1\""),
        "{xml}"
    );
    assert!(xml.contains("<testcase name=\"bad\""), "{xml}");
}

/// Copies `examples/agent-eval` into a fresh git repository, as a clone
/// would have it.
fn example_repo(env: &Env) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/agent-eval");
    let repo = env.scratch("clone");
    let dst = repo.join("examples/agent-eval");
    fs::create_dir_all(&dst).unwrap();
    let mut cp = env.other("cp");
    cp.arg("-R").arg(src.join(".")).arg(&dst);
    assert_code(&output_of(cp), 0);
    git(env, &repo, &["init", "-q", "."]);
    git(env, &repo, &["add", "-A"]);
    git(
        env,
        &repo,
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "commit",
            "-qm",
            "clone",
        ],
    );
    repo
}

#[test]
fn the_example_agent_evaluation_runs_offline_and_shows_every_outcome() {
    let env = Env::new();
    let repo = example_repo(&env);
    let plan = repo.join("examples/agent-eval/plan.yaml");
    let out = output_of(batch_cmd(&env, &plan, &["--json"]));
    assert_code(&out, 1);
    let lines = json_lines(&out);
    let mut expected = vec![("tools".to_string(), "pass".to_string())];
    for r in 1..=3 {
        for agent in ["good", "flaky"] {
            for task in ["t1", "t2", "t3"] {
                let verdict = match (agent, task, r) {
                    ("flaky", "t2", 2) => "fail",
                    ("flaky", "t2", 3) => "timeout",
                    ("flaky", "t3", _) => "hung",
                    _ => "pass",
                };
                expected.push((format!("{task}-{agent}-{r}"), verdict.to_string()));
            }
        }
    }
    assert_eq!(verdicts(&lines), expected);
    let s = summary(&lines);
    assert_eq!(
        (
            s["runs"].as_i64(),
            s["passes"].as_i64(),
            s["fails"].as_i64()
        ),
        (Some(19), Some(14), Some(1))
    );
    assert_eq!(
        (s["hung"].as_i64(), s["timeout"].as_i64()),
        (Some(3), Some(1))
    );
    let rows = s["rows"].as_array().unwrap();
    let row = |agent: &str, task: &str| {
        rows.iter()
            .find(|r| r["cell"]["agent"] == agent && r["cell"]["task"] == task)
            .unwrap()
    };
    assert_eq!(row("flaky", "t2")["pass_at_1"], 0.5);
    assert_eq!(row("flaky", "t2")["pass_hat_k"], false);
    assert_eq!(
        row("flaky", "t3")["pass_at_1"],
        Value::Null,
        "hung runs are not scored"
    );
    assert_eq!(row("good", "t3")["pass_hat_k"], true);
    assert!((row("good", "t1")["cost"].as_f64().unwrap() - 0.036).abs() < 1e-9);
    assert_eq!(worktree_count(&env, &repo), 1, "every worktree removed");
    assert_eq!(line_for(&lines, "t1-good-1")["judge"]["outcome"], "success");
}
