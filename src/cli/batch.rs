//! `jobwatch batch PLAN.yaml`: run a plan's jobs (each an ordinary job),
//! then print the results table or JSON lines and write reports.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use super::{CliError, CliResult, wants_json};
use jobwatch_core::batch::launch::Detached;
use jobwatch_core::batch::plan::{Cell, Plan};
use jobwatch_core::batch::render::{Format, Report, RunInfo};
use jobwatch_core::batch::run::{Progress, Rerun, Stopper, execute};
use jobwatch_core::batch::table::all_passed;
use jobwatch_core::batch::worktree::Source;
use jobwatch_core::exit_code;
use jobwatch_core::model::JobName;
use jobwatch_core::ops::Wrapper;
use jobwatch_core::store::file::FileStore;

const BATCH_HELP: &str = "\
Every job of the plan is an ordinary job: status, wait, kill, logs and MCP see it.
A job's judge runs as job NAME.judge after the job succeeds; the job passes when it exits 0.
A job whose dependency did not pass, or that never started (halt, Ctrl-C), is `skipped`.
Re-running a plan reuses jobs that already ended (by name); --rerun failed runs again
those that did not pass, --rerun all everything. Ctrl-C kills every running job of
the batch (recorded killed) and prints what there is.

Output: a table per matrix cell on a terminal; JSON lines (one per job, then a summary)
with --json or when stdout is not a terminal. Progress on stderr, on a terminal only.
Exit codes: 0 every job passed, 1 some did not, 2 bad plan or usage, 5 interrupted.

Examples:
  jobwatch batch examples/agent-eval/plan.yaml
  jobwatch batch plan.yaml --report results.md --report junit.xml
  jobwatch batch plan.yaml --rerun failed
  jobwatch batch plan.yaml --dry-run          # the jobs the plan expands into";

/// Run many jobs from a YAML plan (matrix, repeats, dependencies, judges)
/// and report a results table.
#[derive(Debug, Args)]
#[command(after_help = BATCH_HELP)]
pub struct BatchArgs {
    /// The plan (YAML).
    #[arg(value_name = "PLAN")]
    plan: PathBuf,

    /// Also write the results to FILE: .md (Markdown), .xml (JUnit) or
    /// .jsonl (JSON lines). Repeatable.
    #[arg(long, value_name = "FILE")]
    report: Vec<PathBuf>,

    /// Print JSON lines even on a terminal.
    #[arg(long)]
    json: bool,

    /// Run again jobs that already ended: `failed` (did not pass) or `all`.
    #[arg(long, value_enum, value_name = "WHICH")]
    rerun: Option<RerunArg>,

    /// Print the jobs the plan expands into (JSON lines) and run nothing.
    #[arg(long)]
    dry_run: bool,
}

/// `--rerun`: the core's [`Rerun`], spelled for clap (the core has no clap
/// types); `none` is the default when the flag is absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum RerunArg {
    /// Reuse every result (only killed and never-run jobs run).
    None,
    /// Run again the jobs that did not pass.
    Failed,
    /// Run everything again.
    All,
}

impl From<RerunArg> for Rerun {
    fn from(r: RerunArg) -> Self {
        match r {
            RerunArg::None => Rerun::None,
            RerunArg::Failed => Rerun::Failed,
            RerunArg::All => Rerun::All,
        }
    }
}

/// Runs the `batch` command.
pub fn batch(store: &FileStore, a: BatchArgs) -> CliResult {
    let formats = a
        .report
        .iter()
        .map(|p| Format::of(p).map(|f| (p.clone(), f)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(CliError::usage)?;
    let plan = Plan::load(&a.plan)?;
    if a.dry_run {
        print_jobs(&plan);
        return Ok(exit_code::SUCCESS);
    }
    let source = plan.worktree.as_ref().map(Source::resolve).transpose()?;
    let names = every_name(&plan);
    let launcher = Detached::new(store, Wrapper::this_executable()?, &names);
    let stopper = Stopper::new();
    let started = Instant::now();
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| CliError::usage(format!("cannot handle signals: {e}")))?;
    let handle = signals.handle();
    let outcome = std::thread::scope(|scope| {
        scope.spawn(|| {
            for _ in signals.forever() {
                stopper.interrupt(&launcher);
            }
        });
        let mut live = LiveProgress::start(started);
        let outcome = execute(
            &plan,
            &launcher,
            &stopper,
            source.as_ref(),
            a.rerun.map_or(Rerun::None, Rerun::from),
            &mut |p| live.show(p),
        );
        live.finish();
        handle.close();
        outcome
    })?;
    let code = if outcome.interrupted {
        exit_code::KILLED
    } else if all_passed(&outcome.results) {
        exit_code::SUCCESS
    } else {
        exit_code::FAILED
    };
    let report = Report::new(
        RunInfo {
            plan: a.plan.display().to_string(),
            elapsed_ms: started.elapsed().as_millis() as u64,
            interrupted: outcome.interrupted,
            halted: outcome.halted,
            exit_code: code,
        },
        plan.axes.iter().map(|x| x.name.clone()).collect(),
        outcome.results,
    );
    // Reports first: a closed stdout must not lose them.
    let mut failed_reports = Vec::new();
    for (path, format) in &formats {
        if let Err(e) = std::fs::write(path, report.render(*format)) {
            failed_reports.push(format!("cannot write report {}: {e}", path.display()));
        }
    }
    let text = if wants_json(a.json) {
        report.json_lines()
    } else {
        report.terminal()
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    if let Some(first) = failed_reports.first() {
        return Err(CliError::usage(first));
    }
    Ok(code)
}

/// Every name the batch may run: its jobs and their judges.
fn every_name(plan: &Plan) -> Vec<JobName> {
    plan.jobs
        .iter()
        .flat_map(|j| std::iter::once(j.name.clone()).chain(j.judge.iter().map(|x| x.name.clone())))
        .collect()
}

/// One expanded job, as `--dry-run` prints it.
#[derive(Serialize)]
struct PlannedJob<'a> {
    name: &'a str,
    job: &'a str,
    cell: &'a Cell,
    #[serde(skip_serializing_if = "Option::is_none")]
    repeat: Option<u32>,
    run: &'a [String],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    after: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    judge: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    worktree: bool,
}

fn print_jobs(plan: &Plan) {
    let mut out = std::io::stdout().lock();
    for j in &plan.jobs {
        let line = PlannedJob {
            name: j.name.as_str(),
            job: &j.key,
            cell: &j.cell,
            repeat: j.repeat,
            run: &j.run,
            after: j.after.iter().map(|d| d.name.as_str()).collect(),
            judge: j.judge.as_ref().map(|x| x.run.as_slice()),
            group: j.group.as_ref().map(|g| format!("{}:{}", g.name, g.size)),
            worktree: j.worktree,
        };
        let _ = writeln!(out, "{}", serde_json::to_string(&line).expect("serializes"));
    }
}

/// The progress line on stderr while the batch runs, on a terminal only:
/// done/total, running, queued, failed and an estimate of the time left.
struct LiveProgress {
    bar: Option<ProgressBar>,
    started: Instant,
    /// Jobs already done when the batch began (resumed), for the estimate.
    resumed: Option<usize>,
}

impl LiveProgress {
    fn start(started: Instant) -> LiveProgress {
        let terminal =
            std::io::stderr().is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb");
        let bar = terminal.then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(10));
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed_precise} {wide_msg}")
                    .expect("a valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        LiveProgress {
            bar,
            started,
            resumed: None,
        }
    }

    fn show(&mut self, p: &Progress) {
        let Some(bar) = &self.bar else { return };
        let resumed = *self.resumed.get_or_insert(p.done);
        bar.set_message(progress_line(p, resumed, self.started.elapsed()));
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// `done 5/18 · running 4 · queued 9 · failed 1 · ETA 32s`: the estimate
/// assumes the jobs left take as long as those done so far in this run.
fn progress_line(p: &Progress, resumed_at_start: usize, elapsed: Duration) -> String {
    let mut s = format!(
        "done {}/{} · running {} · queued {} · failed {}",
        p.done, p.total, p.running, p.queued, p.failed
    );
    let done_now = p.done.saturating_sub(resumed_at_start);
    let left = p.total - p.done;
    if done_now > 0 && left > 0 {
        let eta = elapsed.mul_f64(left as f64 / done_now as f64);
        s.push_str(&format!(
            " · ETA {}",
            humantime::format_duration(Duration::from_secs(eta.as_secs().max(1)))
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_counts_and_estimates_from_this_run_only() {
        let p = Progress {
            total: 10,
            done: 6,
            resumed: 2,
            failed: 1,
            running: 2,
            queued: 2,
        };
        // 4 done in 8 s this run, 4 left: about 8 s more.
        assert_eq!(
            progress_line(&p, 2, Duration::from_secs(8)),
            "done 6/10 · running 2 · queued 2 · failed 1 · ETA 8s"
        );
        assert_eq!(
            progress_line(&p, 6, Duration::from_secs(8)),
            "done 6/10 · running 2 · queued 2 · failed 1"
        );
    }
}
