//! The results of a batch: one row per matrix cell and a summary, computed
//! from the jobs' results alone (pure).
//!
//! Every job gets one [`Verdict`]. `pass` and `fail` are the work's own
//! verdicts (a failed job, or a judge that said no); `hung`, `timeout` and
//! `lost` are infrastructure outcomes, counted apart and never as the
//! work's failures; `killed` (interrupted) and `skipped` (never started: a
//! dependency did not pass, the batch halted, or the start was refused) are
//! neither. So:
//!
//! - **pass@1** = passes / (passes + fails): the share of scored repeats
//!   that passed;
//! - **pass^k** = every repeat of the cell ran and passed (`yes`); `no` as
//!   soon as one failed; undecided (`-`) when none failed but some have no
//!   verdict. The summary gives the share of decided cells that passed all;
//! - **consistency** = the share of scored repeats that agree with the
//!   cell's majority verdict (max(passes, fails) / scored);
//! - **median** and **p90** durations cover every run that ran (killed and
//!   infrastructure outcomes included, so timeouts show in the tail): the
//!   median of an even count is the mean of the middle two, p90 is the
//!   nearest rank;
//! - **cost** is the sum of the costs that could be read.

use serde::{Deserialize, Serialize};

use super::plan::Cell;
use crate::model::Outcome;

/// How a batch job ended: a jobwatch outcome, or `skipped` when it never
/// started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobOutcome {
    /// The command exited 0.
    Success,
    /// It exited non-zero or died of a signal.
    Failed,
    /// It ran past its time limit.
    Timeout,
    /// It made no progress for too long.
    Hung,
    /// It was killed (Ctrl-C of the batch, `halt: now`, `jobwatch kill`).
    Killed,
    /// Its wrapper vanished.
    Lost,
    /// It never started.
    Skipped,
}

impl From<Outcome> for JobOutcome {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Success => JobOutcome::Success,
            Outcome::Failed => JobOutcome::Failed,
            Outcome::Timeout => JobOutcome::Timeout,
            Outcome::Hung => JobOutcome::Hung,
            Outcome::Killed => JobOutcome::Killed,
            Outcome::Lost => JobOutcome::Lost,
            Outcome::Skipped => JobOutcome::Skipped,
        }
    }
}

impl JobOutcome {
    /// The lowercase word.
    pub fn as_str(self) -> &'static str {
        match self {
            JobOutcome::Success => "success",
            JobOutcome::Failed => "failed",
            JobOutcome::Timeout => "timeout",
            JobOutcome::Hung => "hung",
            JobOutcome::Killed => "killed",
            JobOutcome::Lost => "lost",
            JobOutcome::Skipped => "skipped",
        }
    }
}

/// The batch's verdict on one job: what the table counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// It succeeded and its judge (if any) passed it.
    Pass,
    /// It failed, or its judge said no.
    Fail,
    /// It (or its judge) hung: infrastructure.
    Hung,
    /// It (or its judge) timed out: infrastructure.
    Timeout,
    /// It (or its judge) was lost: infrastructure.
    Lost,
    /// It (or its judge) was killed before a verdict.
    Killed,
    /// It never started.
    Skipped,
}

impl Verdict {
    /// The lowercase word.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Hung => "hung",
            Verdict::Timeout => "timeout",
            Verdict::Lost => "lost",
            Verdict::Killed => "killed",
            Verdict::Skipped => "skipped",
        }
    }

    /// Hung, timeout or lost: the machinery failed, not the work.
    pub fn is_infrastructure(self) -> bool {
        matches!(self, Verdict::Hung | Verdict::Timeout | Verdict::Lost)
    }

    /// A verdict on the work itself (pass or fail).
    pub fn is_scored(self) -> bool {
        matches!(self, Verdict::Pass | Verdict::Fail)
    }

    /// What `halt` counts: the work failed or the machinery did.
    pub fn counts_as_failure(self) -> bool {
        self == Verdict::Fail || self.is_infrastructure()
    }

    fn of(o: JobOutcome) -> Verdict {
        match o {
            JobOutcome::Success => Verdict::Pass,
            JobOutcome::Failed => Verdict::Fail,
            JobOutcome::Timeout => Verdict::Timeout,
            JobOutcome::Hung => Verdict::Hung,
            JobOutcome::Killed => Verdict::Killed,
            JobOutcome::Lost => Verdict::Lost,
            JobOutcome::Skipped => Verdict::Skipped,
        }
    }
}

/// A judge's run: pass when it succeeded (exited 0).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JudgeResult {
    /// The judge job's outcome.
    pub outcome: Outcome,
    /// Its exit code.
    pub exit_code: Option<i32>,
}

/// One job's result, as the table and the reports take it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobResult {
    /// The job's name.
    pub name: String,
    /// The key under `jobs:` it came from.
    pub key: String,
    /// Its matrix values.
    pub cell: Cell,
    /// Its repetition, when repeated.
    pub repeat: Option<u32>,
    /// How the job itself ended.
    pub outcome: JobOutcome,
    /// Its exit code.
    pub exit_code: Option<i32>,
    /// Its run time in ms (all attempts).
    pub duration_ms: Option<u64>,
    /// Its judge's run, when it has a judge and the judge ran.
    pub judge: Option<JudgeResult>,
    /// The cost read from its result JSON.
    pub cost: Option<f64>,
    /// Attempts it took (retries + 1 at most).
    pub attempts: u32,
    /// Why it ended so (for anything but a pass).
    pub reason: Option<String>,
    /// Its log.
    pub log: Option<String>,
    /// Its worktree, when it was kept.
    pub worktree: Option<String>,
    /// Its result comes from an earlier run of the batch (resume).
    pub resumed: bool,
}

impl JobResult {
    /// The verdict the table counts.
    pub fn verdict(&self) -> Verdict {
        match (&self.outcome, &self.judge) {
            (JobOutcome::Success, Some(judge)) => Verdict::of(judge.outcome.into()),
            (outcome, _) => Verdict::of(*outcome),
        }
    }
}

/// Counts of verdicts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Jobs.
    pub runs: usize,
    /// Passed.
    pub passes: usize,
    /// Failed (the work, or its judge, said no).
    pub fails: usize,
    /// Hung.
    pub hung: usize,
    /// Timed out.
    pub timeout: usize,
    /// Lost.
    pub lost: usize,
    /// Killed.
    pub killed: usize,
    /// Skipped.
    pub skipped: usize,
}

impl Counts {
    fn add(&mut self, v: Verdict) {
        self.runs += 1;
        match v {
            Verdict::Pass => self.passes += 1,
            Verdict::Fail => self.fails += 1,
            Verdict::Hung => self.hung += 1,
            Verdict::Timeout => self.timeout += 1,
            Verdict::Lost => self.lost += 1,
            Verdict::Killed => self.killed += 1,
            Verdict::Skipped => self.skipped += 1,
        }
    }

    /// Runs with a verdict on the work (pass or fail).
    pub fn scored(&self) -> usize {
        self.passes + self.fails
    }

    /// passes / scored.
    pub fn pass_at_1(&self) -> Option<f64> {
        ratio(self.passes, self.scored())
    }

    /// The share of scored runs agreeing with the majority verdict.
    pub fn consistency(&self) -> Option<f64> {
        ratio(self.passes.max(self.fails), self.scored())
    }

    /// Every run passed (`Some(true)`), one failed (`Some(false)`), or
    /// neither can be said.
    pub fn pass_hat_k(&self) -> Option<bool> {
        if self.fails > 0 {
            Some(false)
        } else if self.runs > 0 && self.passes == self.runs {
            Some(true)
        } else {
            None
        }
    }
}

fn ratio(n: usize, d: usize) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

/// One matrix cell of one job key: its repeats aggregated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellRow {
    /// The job key.
    pub job: String,
    /// The matrix values.
    pub cell: Cell,
    /// The verdict counts.
    #[serde(flatten)]
    pub counts: Counts,
    /// passes / scored.
    pub pass_at_1: Option<f64>,
    /// Every repeat passed (`pass^k`).
    pub pass_hat_k: Option<bool>,
    /// Median duration, ms.
    pub median_ms: Option<u64>,
    /// 90th percentile duration (nearest rank), ms.
    pub p90_ms: Option<u64>,
    /// Total cost.
    pub cost: Option<f64>,
    /// Share of scored repeats agreeing with the majority.
    pub consistency: Option<f64>,
}

/// Every job of the batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    /// The verdict counts.
    #[serde(flatten)]
    pub counts: Counts,
    /// passes / scored, over all jobs.
    pub pass_at_1: Option<f64>,
    /// The share of decided cells whose every repeat passed.
    pub pass_hat_k: Option<f64>,
    /// Cells whose every repeat passed.
    pub cells_all_passed: usize,
    /// Cells with a decided pass^k.
    pub cells_decided: usize,
    /// Cells.
    pub cells: usize,
    /// Median duration, ms.
    pub median_ms: Option<u64>,
    /// 90th percentile duration, ms.
    pub p90_ms: Option<u64>,
    /// Total cost.
    pub cost: Option<f64>,
    /// Share of scored runs agreeing with their cell's majority.
    pub consistency: Option<f64>,
    /// Every job passed.
    pub all_passed: bool,
}

/// The table: cells in the order their first job appears, and the summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Table {
    /// One row per (job key, matrix values).
    pub cells: Vec<CellRow>,
    /// The whole batch.
    pub summary: Summary,
}

/// Computes the table from the jobs' results.
pub fn tabulate(results: &[JobResult]) -> Table {
    let mut groups: Vec<((&str, &Cell), Vec<&JobResult>)> = Vec::new();
    for r in results {
        match groups
            .iter_mut()
            .find(|((k, c), _)| *k == r.key && **c == r.cell)
        {
            Some((_, members)) => members.push(r),
            None => groups.push(((&r.key, &r.cell), vec![r])),
        }
    }
    let cells: Vec<CellRow> = groups
        .into_iter()
        .map(|((job, cell), members)| {
            let stats = stats(&members);
            CellRow {
                job: job.to_owned(),
                cell: cell.clone(),
                pass_at_1: stats.counts.pass_at_1(),
                pass_hat_k: stats.counts.pass_hat_k(),
                consistency: stats.counts.consistency(),
                counts: stats.counts,
                median_ms: stats.median_ms,
                p90_ms: stats.p90_ms,
                cost: stats.cost,
            }
        })
        .collect();
    let all: Vec<&JobResult> = results.iter().collect();
    let total = stats(&all);
    let decided = cells.iter().filter(|c| c.pass_hat_k.is_some()).count();
    let all_passed_cells = cells.iter().filter(|c| c.pass_hat_k == Some(true)).count();
    let majority: usize = cells
        .iter()
        .map(|c| c.counts.passes.max(c.counts.fails))
        .sum();
    let summary = Summary {
        pass_at_1: total.counts.pass_at_1(),
        pass_hat_k: ratio(all_passed_cells, decided),
        cells_all_passed: all_passed_cells,
        cells_decided: decided,
        cells: cells.len(),
        median_ms: total.median_ms,
        p90_ms: total.p90_ms,
        cost: total.cost,
        consistency: ratio(majority, total.counts.scored()),
        all_passed: all_passed(results),
        counts: total.counts,
    };
    Table { cells, summary }
}

/// Whether every job passed (and there was at least one).
pub fn all_passed(results: &[JobResult]) -> bool {
    !results.is_empty() && results.iter().all(|r| r.verdict() == Verdict::Pass)
}

struct Stats {
    counts: Counts,
    median_ms: Option<u64>,
    p90_ms: Option<u64>,
    cost: Option<f64>,
}

fn stats(members: &[&JobResult]) -> Stats {
    let mut counts = Counts::default();
    for r in members {
        counts.add(r.verdict());
    }
    let mut durations: Vec<u64> = members
        .iter()
        .filter(|r| r.outcome != JobOutcome::Skipped)
        .filter_map(|r| r.duration_ms)
        .collect();
    durations.sort_unstable();
    let costs: Vec<f64> = members.iter().filter_map(|r| r.cost).collect();
    Stats {
        counts,
        median_ms: median(&durations),
        p90_ms: nearest_rank(&durations, 90),
        cost: (!costs.is_empty()).then(|| costs.iter().sum()),
    }
}

/// The median of sorted values: the mean of the middle two for an even
/// count (rounded down).
fn median(sorted: &[u64]) -> Option<u64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

/// The nearest-rank percentile `p` of sorted values.
fn nearest_rank(sorted: &[u64], p: usize) -> Option<u64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (p * n).div_ceil(100).max(1);
    Some(sorted[rank - 1])
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn cell(agent: &str, task: &str) -> Cell {
        Cell(vec![
            ("agent".into(), agent.into()),
            ("task".into(), task.into()),
        ])
    }

    fn job(
        name: &str,
        c: Cell,
        repeat: u32,
        outcome: JobOutcome,
        duration: u64,
        judge: Option<Outcome>,
        cost: Option<f64>,
    ) -> JobResult {
        JobResult {
            name: name.into(),
            key: "solve".into(),
            cell: c,
            repeat: Some(repeat),
            outcome,
            exit_code: match outcome {
                JobOutcome::Success => Some(0),
                JobOutcome::Failed => Some(1),
                _ => None,
            },
            duration_ms: (outcome != JobOutcome::Skipped).then_some(duration),
            judge: judge.map(|o| JudgeResult {
                outcome: o,
                exit_code: Some(i32::from(o != Outcome::Success)),
            }),
            cost,
            attempts: 1,
            reason: None,
            log: None,
            worktree: None,
            resumed: false,
        }
    }

    /// A fixture with known outcomes: a setup job, then three cells of
    /// three repeats each:
    /// - alpha/t1: pass, pass, pass (durations 100, 200, 300; cost .1 each)
    /// - alpha/t2: pass, judge fail, hung (400, 500, 600; cost .5 on two)
    /// - beta/t1:  fail, timeout, skipped (700, 800, -)
    pub(crate) fn fixture() -> Vec<JobResult> {
        use JobOutcome::*;
        let mut setup = job("setup", Cell::default(), 1, Success, 50, None, None);
        setup.key = "setup".into();
        setup.repeat = None;
        let (a1, a2, b1) = (cell("alpha", "t1"), cell("alpha", "t2"), cell("beta", "t1"));
        let ok = Some(Outcome::Success);
        vec![
            setup,
            job("a1-1", a1.clone(), 1, Success, 100, ok, Some(0.1)),
            job("a1-2", a1.clone(), 2, Success, 200, ok, Some(0.1)),
            job("a1-3", a1, 3, Success, 300, ok, Some(0.1)),
            job("a2-1", a2.clone(), 1, Success, 400, ok, Some(0.5)),
            job(
                "a2-2",
                a2.clone(),
                2,
                Success,
                500,
                Some(Outcome::Failed),
                Some(0.5),
            ),
            job("a2-3", a2, 3, Hung, 600, None, None),
            job("b1-1", b1.clone(), 1, Failed, 700, None, None),
            job("b1-2", b1.clone(), 2, Timeout, 800, None, None),
            job("b1-3", b1, 3, Skipped, 0, None, None),
        ]
    }

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-9)
    }

    #[test]
    fn verdicts_combine_the_job_and_its_judge() {
        let f = fixture();
        let v: Vec<&str> = f.iter().map(|r| r.verdict().as_str()).collect();
        assert_eq!(
            v,
            [
                "pass", "pass", "pass", "pass", "pass", "fail", "hung", "fail", "timeout",
                "skipped"
            ]
        );
        let mut judge_hung = f[1].clone();
        judge_hung.judge.as_mut().unwrap().outcome = Outcome::Hung;
        assert_eq!(judge_hung.verdict(), Verdict::Hung);
        let mut failed_with_judge = f[1].clone();
        failed_with_judge.outcome = JobOutcome::Failed;
        assert_eq!(failed_with_judge.verdict(), Verdict::Fail);
    }

    #[test]
    fn every_number_of_the_fixture_table() {
        let t = tabulate(&fixture());
        assert_eq!(t.cells.len(), 4);

        let setup = &t.cells[0];
        assert_eq!((setup.job.as_str(), setup.cell.0.len()), ("setup", 0));
        assert_eq!((setup.counts.runs, setup.counts.passes), (1, 1));
        assert_eq!(setup.pass_hat_k, Some(true));
        assert_eq!(
            (setup.median_ms, setup.p90_ms, setup.cost),
            (Some(50), Some(50), None)
        );

        let a1 = &t.cells[1];
        assert_eq!(a1.cell, cell("alpha", "t1"));
        assert_eq!(
            a1.counts,
            Counts {
                runs: 3,
                passes: 3,
                ..Counts::default()
            }
        );
        assert!(close(a1.pass_at_1, 1.0));
        assert_eq!(a1.pass_hat_k, Some(true));
        assert_eq!((a1.median_ms, a1.p90_ms), (Some(200), Some(300)));
        assert!(close(a1.cost, 0.3));
        assert!(close(a1.consistency, 1.0));

        let a2 = &t.cells[2];
        assert_eq!(
            a2.counts,
            Counts {
                runs: 3,
                passes: 1,
                fails: 1,
                hung: 1,
                ..Counts::default()
            }
        );
        assert!(close(a2.pass_at_1, 0.5), "the hung run is not scored");
        assert_eq!(a2.pass_hat_k, Some(false));
        assert_eq!((a2.median_ms, a2.p90_ms), (Some(500), Some(600)));
        assert!(close(a2.cost, 1.0));
        assert!(close(a2.consistency, 0.5));

        let b1 = &t.cells[3];
        assert_eq!(
            b1.counts,
            Counts {
                runs: 3,
                fails: 1,
                timeout: 1,
                skipped: 1,
                ..Counts::default()
            }
        );
        assert!(close(b1.pass_at_1, 0.0));
        assert_eq!(b1.pass_hat_k, Some(false));
        assert_eq!(
            (b1.median_ms, b1.p90_ms),
            (Some(750), Some(800)),
            "skipped has no duration"
        );
        assert_eq!(b1.cost, None);
        assert!(close(b1.consistency, 1.0));

        let s = &t.summary;
        assert_eq!(
            s.counts,
            Counts {
                runs: 10,
                passes: 5,
                fails: 2,
                hung: 1,
                timeout: 1,
                lost: 0,
                killed: 0,
                skipped: 1
            }
        );
        assert!(close(s.pass_at_1, 5.0 / 7.0));
        assert_eq!((s.cells, s.cells_decided, s.cells_all_passed), (4, 4, 2));
        assert!(close(s.pass_hat_k, 0.5));
        // Durations 50,100,...,800 (9 values): median 400, p90 rank 9 = 800.
        assert_eq!((s.median_ms, s.p90_ms), (Some(400), Some(800)));
        assert!(close(s.cost, 1.3));
        // Majorities: setup 1, a1 3, a2 1, b1 1 = 6 of 7 scored.
        assert!(close(s.consistency, 6.0 / 7.0));
        assert!(!s.all_passed);
    }

    #[test]
    fn pass_hat_k_is_undecided_without_failures_but_with_gaps() {
        let mut f = fixture();
        f.truncate(4);
        f[3].outcome = JobOutcome::Lost;
        f[3].judge = None;
        let t = tabulate(&f);
        assert_eq!(t.cells[1].pass_hat_k, None);
        assert!(close(t.cells[1].pass_at_1, 1.0));
        assert_eq!(t.summary.cells_decided, 1);
        assert_eq!(t.summary.counts.lost, 1);
        assert!(!t.summary.all_passed);
    }

    #[test]
    fn all_passed_needs_every_job_and_at_least_one() {
        let f = fixture();
        assert!(all_passed(&f[..4]));
        assert!(!all_passed(&f));
        assert!(!all_passed(&[]));
        let t = tabulate(&[]);
        assert_eq!(t.summary.pass_at_1, None);
        assert_eq!(t.summary.median_ms, None);
    }

    #[test]
    fn percentiles_use_nearest_rank_and_the_median_the_middle() {
        assert_eq!(median(&[1, 2, 3, 4]), Some(2));
        assert_eq!(median(&[1, 3, 5, 7]), Some(4));
        assert_eq!(median(&[5]), Some(5));
        let ten: Vec<u64> = (1..=10).collect();
        assert_eq!(nearest_rank(&ten, 90), Some(9));
        let eleven: Vec<u64> = (1..=11).collect();
        assert_eq!(nearest_rank(&eleven, 90), Some(10));
        assert_eq!(nearest_rank(&[7], 90), Some(7));
        assert_eq!(nearest_rank(&[], 90), None);
    }
}
