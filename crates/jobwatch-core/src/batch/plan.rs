//! A batch plan: the YAML file of `jobwatch batch`, parsed strictly
//! (unknown keys, bad durations, unknown placeholders, unknown or cyclic
//! dependencies are errors naming `file:line:col`) and expanded into the
//! concrete jobs it describes.
//!
//! ```yaml
//! concurrency: 4
//! defaults: { timeout: 20m, stale: 3m, retries: 1 }
//! matrix: { agent: [alpha, beta], task: [t1, t2, t3] }
//! repeat: 3
//! worktree: { repo: ., ref: HEAD, keep: failed }
//! halt: { fail: 25%, when: soon }
//! jobs:
//!   setup: { run: [make, deps] }
//!   solve:
//!     after: [setup]
//!     name: "{task}-{agent}-{repeat}"
//!     run: ["./agents/{agent}.sh", "tasks/{task}.md"]
//!     judge: [sh, -c, "./check.sh {task}"]
//!     cost: cost_usd
//!     group: gpu:2
//! ```
//!
//! Parsing is pure: [`Plan::parse`] reads text, touches no file, and gives
//! either a plan whose every job has a valid, unique name and whose
//! dependencies form no cycle, or one error.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

use super::expand::{self, JobTemplate};
use super::template::{Template, is_identifier};
use crate::breaker::{BreakerKey, BreakerSpec, PolicyUpdate};
use crate::model::{JobName, LivenessMode, Settings};
use crate::spec::ms;

/// Most concrete jobs one plan may expand into.
pub const MAX_JOBS: usize = 100_000;
/// The suffix of a judge's job name: the judge of `x` runs as job `x.judge`.
pub const JUDGE_SUFFIX: &str = ".judge";

/// Why a plan could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The file could not be read.
    #[error("cannot read plan {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid YAML or not a valid plan.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the problem.
        line: u32,
        /// 1-based column (in characters) of the problem.
        column: u32,
        /// What is wrong, on one line.
        message: String,
    },
}

/// A place in the plan file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loc {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
}

impl Loc {
    fn of<T>(s: &Spanned<T>) -> Loc {
        Loc::from(s.referenced)
    }
}

impl From<Location> for Loc {
    fn from(l: Location) -> Self {
        Loc {
            line: (l.line() as u32).max(1),
            column: (l.column() as u32).max(1),
        }
    }
}

/// A validation problem at a place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem(pub Loc, pub String);

/// A loaded, expanded plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The plan file, as given.
    pub file: PathBuf,
    /// Its directory: relative paths (`cwd`, `worktree.repo`) start here,
    /// and jobs run here unless told otherwise.
    pub base_dir: PathBuf,
    /// Most jobs running at once.
    pub concurrency: usize,
    /// Runs of each matrix cell (`{repeat}` counts 1..=repeat).
    pub repeat: u32,
    /// The matrix axes, in file order.
    pub axes: Vec<Axis>,
    /// When to stop early.
    pub halt: Option<Halt>,
    /// One git worktree per job, if set.
    pub worktree: Option<WorktreePlan>,
    /// The job keys of `jobs:`, in file order.
    pub keys: Vec<String>,
    /// Every concrete job, in start order: file order of the keys, then
    /// repeat, then the matrix (first axis slowest).
    pub jobs: Vec<JobSpec>,
}

/// One axis of the matrix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Axis {
    /// Its name, usable as `{name}` in templates.
    pub name: String,
    /// Its values, in file order.
    pub values: Vec<String>,
}

/// The matrix values of one job: the axes its templates name, in matrix
/// order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cell(pub Vec<(String, String)>);

impl Cell {
    /// The value of `axis`, if the job uses it.
    pub fn get(&self, axis: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(a, _)| a == axis)
            .map(|(_, v)| v.as_str())
    }
}

impl serde::Serialize for Cell {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// One concrete job of the plan.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// Its job name (unique in the plan).
    pub name: JobName,
    /// The key under `jobs:` it was expanded from.
    pub key: String,
    /// Its matrix values.
    pub cell: Cell,
    /// Its repetition (1-based), when it is repeated.
    pub repeat: Option<u32>,
    /// The command and its arguments.
    pub run: Vec<String>,
    /// The jobs it waits for.
    pub after: Vec<Dependency>,
    /// A command run after the job succeeds: the job passes when it exits 0.
    pub judge: Option<Judge>,
    /// Where its cost is in its result JSON.
    pub cost: Option<CostPath>,
    /// The slot group it runs in.
    pub group: Option<Group>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Its working directory as written (relative to the plan's directory,
    /// or to its worktree's matching directory).
    pub cwd: Option<PathBuf>,
    /// The supervision policy of the job (and of its judge).
    pub settings: Settings,
    /// Its circuit breaker.
    pub breaker: Option<BreakerSpec>,
    /// Whether it runs in a git worktree of its own.
    pub worktree: bool,
}

/// A job's judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judge {
    /// Its job name (`NAME.judge`).
    pub name: JobName,
    /// The command and its arguments.
    pub run: Vec<String>,
}

/// A dependency of a job on another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The job depended on.
    pub name: JobName,
    /// Its index in [`Plan::jobs`].
    pub index: usize,
    /// What it must end with.
    pub when: AfterCondition,
}

/// What a dependency must end with for its dependent to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterCondition {
    /// It passed (success, and its judge passed); otherwise the dependent
    /// is `skipped`. The default.
    Success,
    /// It ended, whatever the outcome.
    Done,
}

/// A slot group: at most `size` of its jobs run at once in the batch.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Group {
    /// The group's name.
    pub name: String,
    /// How many of its jobs may run at once.
    pub size: usize,
}

/// When to stop the batch early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Halt {
    /// How many failures stop it.
    pub fail: HaltLimit,
    /// What stopping means.
    pub when: HaltWhen,
}

/// A failure limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaltLimit {
    /// This many failed jobs.
    Count(u32),
    /// This percentage of the jobs finished so far failed, once at least
    /// [`super::run::HALT_PERCENT_MIN_DONE`] have finished.
    Percent(u32),
}

/// What halting does, as GNU parallel's `--halt now|soon`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HaltWhen {
    /// Start nothing more; let running jobs finish.
    Soon,
    /// Kill running jobs (recorded `killed`) and start nothing more.
    Now,
}

/// The worktree settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorktreePlan {
    /// The repository (resolved against the plan's directory).
    pub repo: PathBuf,
    /// The commit to check out (a ref, resolved once when the batch starts).
    pub reference: String,
    /// Which worktrees survive their job.
    pub keep: Keep,
}

/// Which worktrees are kept after their job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Keep {
    /// None: every worktree is removed (the default).
    None,
    /// Those of jobs that failed, hung, timed out or were lost.
    Failed,
    /// All of them.
    All,
}

/// A dotted path into a job's result JSON (`usage.cost_usd`, `runs.0.cost`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CostPath(Vec<String>);

impl CostPath {
    /// Parses `a.b.c`; every segment non-empty.
    pub fn parse(s: &str) -> Result<CostPath, String> {
        let segments: Vec<String> = s.split('.').map(str::to_owned).collect();
        if s.trim().is_empty() || segments.iter().any(|p| p.is_empty()) {
            return Err(format!(
                "cost {s:?} is not a dotted path (use e.g. cost_usd or usage.cost_usd)"
            ));
        }
        Ok(CostPath(segments))
    }

    /// The number at this path in `json`, if there is one (an array is
    /// indexed by a numeric segment).
    pub fn read(&self, json: &serde_json::Value) -> Option<f64> {
        let mut v = json;
        for seg in &self.0 {
            v = match v {
                serde_json::Value::Object(m) => m.get(seg)?,
                serde_json::Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        v.as_f64()
    }
}

impl fmt::Display for CostPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

impl Plan {
    /// Reads and validates the plan at `path`.
    pub fn load(path: &Path) -> Result<Plan, PlanError> {
        let text = std::fs::read_to_string(path).map_err(|source| PlanError::Read {
            path: path.to_owned(),
            source,
        })?;
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let base = parent.canonicalize().unwrap_or(parent);
        Plan::parse(&text, path, &base)
    }

    /// Parses plan text; `origin` names it in errors, `base_dir` is where
    /// relative paths start.
    pub fn parse(text: &str, origin: &Path, base_dir: &Path) -> Result<Plan, PlanError> {
        let at = |Problem(loc, message): Problem| PlanError::Invalid {
            path: origin.to_owned(),
            line: loc.line,
            column: loc.column,
            message: one_line(&message),
        };
        let raw: RawPlan = serde_saphyr::from_str(text).map_err(|e| at(yaml_problem(&e)))?;
        let mut plan = raw.resolve(base_dir).map_err(at)?;
        plan.file = origin.to_owned();
        Ok(plan)
    }

    /// The job named `name`.
    pub fn job(&self, name: &JobName) -> Option<&JobSpec> {
        self.jobs.iter().find(|j| &j.name == name)
    }
}

/// The problem a YAML error describes, at its place.
fn yaml_problem(e: &serde_saphyr::Error) -> Problem {
    use serde_saphyr::MessageFormatter;
    let loc = e
        .location()
        .map(Loc::from)
        .unwrap_or(Loc { line: 1, column: 1 });
    let message = serde_saphyr::UserMessageFormatter.format_message(e);
    let message = message.escape_debug().to_string();
    // The library's own hint speaks to programmers, not plan authors.
    let message = match message.split_once(", set DuplicateKeyPolicy") {
        Some((head, _)) => head.to_owned(),
        None => message,
    };
    Problem(loc, message)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

// ------------------------------------------------------------ raw YAML ---

/// A mapping whose keys keep their order and place in the file.
struct Ordered<V>(Vec<(Spanned<String>, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Ordered<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Vis<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for Vis<V> {
            type Value = Ordered<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Ordered<V>, A::Error> {
                let mut entries = Vec::new();
                while let Some(k) = m.next_key::<Spanned<String>>()? {
                    entries.push((k, m.next_value()?));
                }
                Ok(Ordered(entries))
            }
        }
        d.deserialize_map(Vis(PhantomData))
    }
}

/// A command: a list of arguments run directly, or one string run with
/// `sh -c`.
enum RawCommand {
    Shell(String),
    Argv(Vec<Spanned<String>>),
}

impl<'de> Deserialize<'de> for RawCommand {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawCommand;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of strings (program and arguments) or a shell command string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawCommand, E> {
                if s.trim().is_empty() {
                    return Err(E::custom("the command is empty"));
                }
                Ok(RawCommand::Shell(s.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawCommand, A::Error> {
                let mut argv = Vec::new();
                while let Some(arg) = seq.next_element::<Spanned<String>>()? {
                    argv.push(arg);
                }
                if argv.first().is_none_or(|p| p.value.is_empty()) {
                    return Err(de::Error::custom(
                        "the command list needs a program as its first element",
                    ));
                }
                Ok(RawCommand::Argv(argv))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlan {
    concurrency: Option<Spanned<u32>>,
    #[serde(default)]
    defaults: Option<RawDefaults>,
    matrix: Option<Ordered<Vec<Spanned<String>>>>,
    repeat: Option<Spanned<u32>>,
    worktree: Option<Spanned<RawWorktree>>,
    halt: Option<RawHalt>,
    jobs: Spanned<Ordered<RawJob>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorktree {
    repo: Option<String>,
    #[serde(rename = "ref")]
    reference: Option<Spanned<String>>,
    keep: Option<Keep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHalt {
    fail: Spanned<String>,
    when: Option<HaltWhen>,
}

/// Declares a raw mapping with every `run` setting plus `$extra` fields,
/// and its [`Layer`], so `defaults:` and a job accept the same settings.
macro_rules! with_run_settings {
    ($name:ident { $($extra:tt)* }) => {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct $name {
            $($extra)*
            #[serde(default, deserialize_with = "positive_duration")]
            timeout: Option<Duration>,
            #[serde(default, deserialize_with = "positive_duration")]
            stale: Option<Duration>,
            #[serde(default, deserialize_with = "positive_duration")]
            heartbeat: Option<Duration>,
            #[serde(default, deserialize_with = "any_duration")]
            grace: Option<Duration>,
            liveness: Option<LivenessMode>,
            retries: Option<u32>,
            #[serde(default, deserialize_with = "any_duration")]
            backoff: Option<Duration>,
            #[serde(default, deserialize_with = "any_duration")]
            backoff_max: Option<Duration>,
            breaker: Option<Spanned<String>>,
            max_failures: Option<Spanned<u32>>,
            #[serde(default, deserialize_with = "any_duration")]
            cooldown: Option<Duration>,
            env: Option<Ordered<Spanned<String>>>,
            cwd: Option<Spanned<String>>,
        }

        impl $name {
            fn layer(&mut self) -> Layer {
                Layer {
                    timeout: self.timeout,
                    stale: self.stale,
                    heartbeat: self.heartbeat,
                    grace: self.grace,
                    liveness: self.liveness,
                    retries: self.retries,
                    backoff: self.backoff,
                    backoff_max: self.backoff_max,
                    breaker: self.breaker.take(),
                    max_failures: self.max_failures.take(),
                    cooldown: self.cooldown,
                    env: self.env.take().map(|o| o.0).unwrap_or_default(),
                    cwd: self.cwd.take(),
                }
            }
        }
    };
}

with_run_settings!(RawDefaults {});

with_run_settings!(RawJob {
    run: Spanned<RawCommand>,
    #[serde(default)]
    after: Vec<Spanned<String>>,
    name: Option<Spanned<String>>,
    judge: Option<Spanned<RawCommand>>,
    cost: Option<Spanned<String>>,
    group: Option<Spanned<String>>,
    worktree: Option<Spanned<bool>>,
});

/// The settings one level (`defaults:` or a job) gives.
#[derive(Default)]
struct Layer {
    timeout: Option<Duration>,
    stale: Option<Duration>,
    heartbeat: Option<Duration>,
    grace: Option<Duration>,
    liveness: Option<LivenessMode>,
    retries: Option<u32>,
    backoff: Option<Duration>,
    backoff_max: Option<Duration>,
    breaker: Option<Spanned<String>>,
    max_failures: Option<Spanned<u32>>,
    cooldown: Option<Duration>,
    env: Vec<(Spanned<String>, Spanned<String>)>,
    cwd: Option<Spanned<String>>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::spec::duration(s)
}

fn any_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map(Some).map_err(de::Error::custom)
}

fn positive_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    crate::spec::positive_duration(&s)
        .map(Some)
        .map_err(de::Error::custom)
}

impl RawPlan {
    fn resolve(self, base_dir: &Path) -> Result<Plan, Problem> {
        let concurrency = match &self.concurrency {
            Some(c) if c.value == 0 => {
                return Err(Problem(Loc::of(c), "concurrency must be at least 1".into()));
            }
            Some(c) => c.value as usize,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let repeat = match &self.repeat {
            Some(r) if r.value == 0 => {
                return Err(Problem(Loc::of(r), "repeat must be at least 1".into()));
            }
            Some(r) => r.value,
            None => 1,
        };
        let axes = axes(self.matrix)?;
        let halt = self.halt.map(halt).transpose()?;
        let worktree = self.worktree.map(|w| worktree(w, base_dir)).transpose()?;
        let mut defaults = self.defaults.map_or_else(Layer::default, |mut d| d.layer());
        if self.jobs.value.0.is_empty() {
            return Err(Problem(
                Loc::of(&self.jobs),
                "no jobs: add at least one job under `jobs:`".into(),
            ));
        }
        let axis_names: Vec<String> = axes.iter().map(|a| a.name.clone()).collect();
        let default_env = std::mem::take(&mut defaults.env);
        let mut templates = Vec::new();
        for (key, raw) in self.jobs.value.0 {
            templates.push(job_template(
                key,
                raw,
                &defaults,
                &default_env,
                &axis_names,
                worktree.is_some(),
            )?);
        }
        check_groups(&templates)?;
        let jobs = expand::expand(&templates, &axes, repeat)?;
        Ok(Plan {
            file: PathBuf::new(),
            base_dir: base_dir.to_owned(),
            concurrency,
            repeat,
            axes,
            halt,
            worktree,
            keys: templates.iter().map(|t| t.key.clone()).collect(),
            jobs,
        })
    }
}

fn axes(matrix: Option<Ordered<Vec<Spanned<String>>>>) -> Result<Vec<Axis>, Problem> {
    let mut axes = Vec::new();
    for (name, values) in matrix.map(|m| m.0).unwrap_or_default() {
        let loc = Loc::of(&name);
        if !is_identifier(&name.value) || name.value == super::template::REPEAT {
            return Err(Problem(
                loc,
                format!(
                    "matrix axis {:?}: an axis name starts with a letter or _ and holds only \
                     letters, digits, _ and - (and is not `repeat`)",
                    name.value
                ),
            ));
        }
        if values.is_empty() {
            return Err(Problem(
                loc,
                format!("matrix axis {}: give it at least one value", name.value),
            ));
        }
        let mut seen = HashSet::new();
        for v in &values {
            if v.value.is_empty() {
                return Err(Problem(
                    Loc::of(v),
                    format!("matrix axis {}: a value is empty", name.value),
                ));
            }
            if !seen.insert(v.value.as_str()) {
                return Err(Problem(
                    Loc::of(v),
                    format!(
                        "matrix axis {}: value {:?} appears twice",
                        name.value, v.value
                    ),
                ));
            }
        }
        axes.push(Axis {
            name: name.value,
            values: values.into_iter().map(|v| v.value).collect(),
        });
    }
    Ok(axes)
}

fn halt(h: RawHalt) -> Result<Halt, Problem> {
    let loc = Loc::of(&h.fail);
    let text = h.fail.value.trim();
    let bad = || {
        Problem(
            loc,
            format!(
                "halt.fail {:?}: give a number of failures (e.g. 3) or a percentage of the \
                 jobs done (e.g. 20%)",
                h.fail.value
            ),
        )
    };
    let fail = match text.strip_suffix('%') {
        Some(p) => match p.trim().parse::<u32>() {
            Ok(n @ 1..=100) => HaltLimit::Percent(n),
            _ => return Err(bad()),
        },
        None => match text.parse::<u32>() {
            Ok(n @ 1..) => HaltLimit::Count(n),
            _ => return Err(bad()),
        },
    };
    Ok(Halt {
        fail,
        when: h.when.unwrap_or(HaltWhen::Soon),
    })
}

fn worktree(w: Spanned<RawWorktree>, base_dir: &Path) -> Result<WorktreePlan, Problem> {
    let loc = Loc::of(&w);
    let w = w.value;
    let repo = w.repo.unwrap_or_else(|| ".".into());
    if repo.trim().is_empty() {
        return Err(Problem(loc, "worktree.repo is empty".into()));
    }
    let reference = w.reference.map_or_else(|| "HEAD".into(), |r| r.value);
    if reference.trim().is_empty() || reference.starts_with('-') {
        return Err(Problem(
            loc,
            format!("worktree.ref {reference:?} is not a git ref (e.g. HEAD, main, v1.2)"),
        ));
    }
    Ok(WorktreePlan {
        repo: base_dir.join(repo),
        reference,
        keep: w.keep.unwrap_or(Keep::None),
    })
}

/// Parses one job's templates and settings (defaults filled in).
fn job_template(
    key: Spanned<String>,
    mut raw: RawJob,
    defaults: &Layer,
    default_env: &[(Spanned<String>, Spanned<String>)],
    axes: &[String],
    plan_has_worktree: bool,
) -> Result<JobTemplate, Problem> {
    let key_loc = Loc::of(&key);
    let key = key.value;
    let job = |msg: String| format!("jobs.{key}: {msg}");
    JobName::parse(&key).map_err(|e| {
        Problem(
            key_loc,
            job(format!("{e} (job keys follow job-name rules)")),
        )
    })?;
    let parse = |s: &Spanned<String>, what: &str| {
        Template::parse(&s.value, axes)
            .map_err(|e| Problem(Loc::of(s), job(format!("{what}: {e}"))))
    };
    let command = |c: &Spanned<RawCommand>, what: &str| -> Result<Vec<Template>, Problem> {
        match &c.value {
            RawCommand::Shell(s) => {
                let t = Template::parse(s, axes)
                    .map_err(|e| Problem(Loc::of(c), job(format!("{what}: {e}"))))?;
                Ok(vec![
                    Template::parse("sh", &[]).expect("literal"),
                    Template::parse("-c", &[]).expect("literal"),
                    t,
                ])
            }
            RawCommand::Argv(argv) => argv.iter().map(|a| parse(a, what)).collect(),
        }
    };
    let run = command(&raw.run, "run")?;
    let judge = raw
        .judge
        .as_ref()
        .map(|j| command(j, "judge"))
        .transpose()?;
    let name = raw
        .name
        .as_ref()
        .map(|n| parse(n, "name").map(|t| (t, Loc::of(n))))
        .transpose()?;
    let cost = raw
        .cost
        .as_ref()
        .map(|c| CostPath::parse(&c.value).map_err(|e| Problem(Loc::of(c), job(e))))
        .transpose()?;
    let group = raw
        .group
        .as_ref()
        .map(|g| group(g).map_err(|e| Problem(Loc::of(g), job(e))))
        .transpose()?;
    let mut after = Vec::new();
    for a in &raw.after {
        let (target, when) = match a.value.rsplit_once(':') {
            Some((t, "success")) => (t, AfterCondition::Success),
            Some((t, "done")) => (t, AfterCondition::Done),
            Some((_, other)) => {
                return Err(Problem(
                    Loc::of(a),
                    job(format!(
                        "after {:?}: unknown condition {other:?} (use KEY, KEY:success or KEY:done)",
                        a.value
                    )),
                ));
            }
            None => (a.value.as_str(), AfterCondition::Success),
        };
        after.push((target.to_owned(), when, Loc::of(a)));
    }
    let worktree = match &raw.worktree {
        Some(w) if w.value && !plan_has_worktree => {
            return Err(Problem(
                Loc::of(w),
                job("worktree: true needs a top-level `worktree:` section".into()),
            ));
        }
        Some(w) => w.value,
        None => plan_has_worktree,
    };
    let own = raw.layer();
    let settings = settings(defaults, &own).map_err(|Problem(loc, m)| {
        Problem(if loc == Loc::default() { key_loc } else { loc }, job(m))
    })?;
    let breaker = breaker(defaults, &own).map_err(|Problem(loc, m)| Problem(loc, job(m)))?;
    let mut env: Vec<(String, Template)> = Vec::new();
    for (k, v) in default_env.iter().chain(own.env.iter()) {
        if k.value.is_empty() || k.value.contains(['=', '\0']) {
            return Err(Problem(
                Loc::of(k),
                job(format!("env: {:?} is not a variable name", k.value)),
            ));
        }
        let t = parse(v, &format!("env.{}", k.value))?;
        match env.iter_mut().find(|(name, _)| *name == k.value) {
            Some(slot) => slot.1 = t,
            None => env.push((k.value.clone(), t)),
        }
    }
    let cwd = own
        .cwd
        .as_ref()
        .or(defaults.cwd.as_ref())
        .map(|c| parse(c, "cwd"))
        .transpose()?;
    Ok(JobTemplate {
        key,
        key_loc,
        name,
        run,
        judge,
        env,
        cwd,
        cost,
        group,
        after,
        settings,
        breaker,
        worktree,
    })
}

/// `NAME` or `NAME:SIZE`.
fn group(g: &Spanned<String>) -> Result<Group, String> {
    let bad = || {
        format!(
            "group {:?}: use NAME or NAME:SIZE, e.g. gpu:2 (NAME follows job-name rules, SIZE ≥ 1)",
            g.value
        )
    };
    let (name, size) = match g.value.rsplit_once(':') {
        Some((n, s)) => (
            n,
            s.parse::<usize>()
                .ok()
                .filter(|s| *s >= 1)
                .ok_or_else(bad)?,
        ),
        None => (g.value.as_str(), 1),
    };
    JobName::parse(name).map_err(|_| bad())?;
    Ok(Group {
        name: name.to_owned(),
        size,
    })
}

/// Every job naming a group agrees on its size.
fn check_groups(templates: &[JobTemplate]) -> Result<(), Problem> {
    let mut sizes: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    for t in templates {
        let Some(g) = &t.group else { continue };
        match sizes.get(g.name.as_str()) {
            Some((size, other)) if *size != g.size => {
                return Err(Problem(
                    t.key_loc,
                    format!(
                        "jobs.{}: group {} has size {} here but {size} in jobs.{other}; give it one size",
                        t.key, g.name, g.size
                    ),
                ));
            }
            _ => {
                sizes.insert(&g.name, (g.size, &t.key));
            }
        }
    }
    Ok(())
}

/// The settings of a job: its own, else the plan's defaults, else `run`'s
/// (so a batch job behaves like `jobwatch run`), kept to the spec's rules.
fn settings(defaults: &Layer, own: &Layer) -> Result<Settings, Problem> {
    macro_rules! pick {
        ($f:ident) => {
            own.$f.or(defaults.$f)
        };
    }
    let mut s = crate::spec::default_settings();
    if let Some(stale) = pick!(stale) {
        // A short stale threshold needs looks at least as often.
        s = s.with_stale(stale);
    }
    if let Some(h) = pick!(heartbeat) {
        s.heartbeat_ms = ms(h);
    }
    s.timeout_ms = pick!(timeout).map(ms);
    if let Some(g) = pick!(grace) {
        s.grace_ms = ms(g);
    }
    if let Some(l) = pick!(liveness) {
        s.liveness = l;
    }
    s.retries = pick!(retries).unwrap_or(0);
    if let Some(b) = pick!(backoff) {
        s.backoff_ms = ms(b);
    }
    if let Some(b) = pick!(backoff_max) {
        s.backoff_max_ms = ms(b);
    }
    crate::spec::check_settings(&s).map_err(|e| Problem(Loc::default(), e.to_string()))?;
    Ok(s)
}

fn breaker(defaults: &Layer, own: &Layer) -> Result<Option<BreakerSpec>, Problem> {
    let max_failures = own.max_failures.as_ref().or(defaults.max_failures.as_ref());
    if let Some(m) = max_failures
        && m.value == 0
    {
        return Err(Problem(
            Loc::of(m),
            "max_failures must be at least 1".into(),
        ));
    }
    let Some(key) = own.breaker.as_ref().or(defaults.breaker.as_ref()) else {
        if let Some(m) = max_failures {
            return Err(Problem(Loc::of(m), "max_failures needs a breaker".into()));
        }
        return Ok(None);
    };
    let parsed = BreakerKey::parse(&key.value).map_err(|e| Problem(Loc::of(key), e.to_string()))?;
    Ok(Some(BreakerSpec {
        key: parsed,
        policy: PolicyUpdate {
            max_failures: max_failures.map(|m| m.value),
            cooldown: own.cooldown.or(defaults.cooldown),
        },
    }))
}

/// The judge job's name for a job named `name`.
pub fn judge_name(name: &JobName) -> Result<JobName, String> {
    JobName::parse(&format!("{name}{JUDGE_SUFFIX}")).map_err(|_| {
        format!(
            "job name {name} is too long for its judge (the judge runs as {name}{JUDGE_SUFFIX}, at most {} characters)",
            crate::model::name::MAX_NAME_LEN
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Plan, PlanError> {
        Plan::parse(text, Path::new("plan.yaml"), Path::new("/base"))
    }

    #[track_caller]
    fn error(text: &str) -> String {
        match parse(text) {
            Ok(p) => panic!("expected an error, parsed {} jobs", p.jobs.len()),
            Err(e) => e.to_string(),
        }
    }

    /// The issue's example, with every other field added.
    const FULL: &str = r#"
concurrency: 4
defaults: { timeout: 20m, stale: 3m, retries: 1, env: { MODE: eval } }
matrix: { agent: [alpha, beta], task: [t1, t2, t3] }
repeat: 3
worktree: { repo: ., ref: HEAD, keep: failed }
halt: { fail: 25%, when: now }
jobs:
  setup: { run: [make, deps], worktree: false }
  solve:
    after: [setup]
    name: "{task}-{agent}-{repeat}"
    run: ["./agents/{agent}.sh", "tasks/{task}.md"]
    judge: [sh, -c, "./check.sh {task}"]
    cost: result.cost_usd
    group: gpu:2
    env: { AGENT: "{agent}" }
    cwd: work
    heartbeat: 5s
    grace: 1s
    liveness: output
    backoff: 2s
    backoff_max: 1m
    breaker: evals
    max_failures: 5
    cooldown: 10m
  report:
    after: ["solve:done"]
    run: "echo all done"
"#;

    #[test]
    fn the_issue_example_parses_with_every_field() {
        let p = parse(FULL).unwrap();
        assert_eq!(p.concurrency, 4);
        assert_eq!(p.repeat, 3);
        assert_eq!(p.axes.len(), 2);
        assert_eq!(p.axes[0].name, "agent");
        assert_eq!(p.axes[1].values, ["t1", "t2", "t3"]);
        assert_eq!(
            p.halt,
            Some(Halt {
                fail: HaltLimit::Percent(25),
                when: HaltWhen::Now
            })
        );
        let wt = p.worktree.as_ref().unwrap();
        assert_eq!(wt.repo, Path::new("/base/."));
        assert_eq!(wt.reference, "HEAD");
        assert_eq!(wt.keep, Keep::Failed);
        assert_eq!(p.keys, ["setup", "solve", "report"]);
        // 1 setup, 2 agents x 3 tasks x 3 repeats, 1 report.
        assert_eq!(p.jobs.len(), 1 + 18 + 1);

        let setup = &p.jobs[0];
        assert_eq!(setup.name.as_str(), "setup");
        assert_eq!(setup.run, ["make", "deps"]);
        assert!(!setup.worktree);
        assert_eq!(setup.settings.timeout_ms, Some(1_200_000));
        assert_eq!(setup.settings.stale_ms, 180_000);
        assert_eq!(setup.settings.heartbeat_ms, 10_000);
        assert_eq!(setup.settings.retries, 1);
        assert_eq!(setup.env, [("MODE".to_string(), "eval".to_string())]);
        assert!(setup.judge.is_none() && setup.after.is_empty());

        let s = p.job(&JobName::parse("t2-beta-3").unwrap()).unwrap();
        assert_eq!(s.key, "solve");
        assert_eq!(s.cell.get("agent"), Some("beta"));
        assert_eq!(s.cell.get("task"), Some("t2"));
        assert_eq!(s.repeat, Some(3));
        assert_eq!(s.run, ["./agents/beta.sh", "tasks/t2.md"]);
        let judge = s.judge.as_ref().unwrap();
        assert_eq!(judge.name.as_str(), "t2-beta-3.judge");
        assert_eq!(judge.run, ["sh", "-c", "./check.sh t2"]);
        assert_eq!(s.cost.as_ref().unwrap().to_string(), "result.cost_usd");
        assert_eq!(
            s.group,
            Some(Group {
                name: "gpu".into(),
                size: 2
            })
        );
        assert_eq!(
            s.env,
            [
                ("MODE".to_string(), "eval".to_string()),
                ("AGENT".to_string(), "beta".to_string())
            ]
        );
        assert_eq!(s.cwd.as_deref(), Some(Path::new("work")));
        assert!(s.worktree);
        assert_eq!(s.after.len(), 1);
        assert_eq!(s.after[0].name.as_str(), "setup");
        assert_eq!(s.after[0].when, AfterCondition::Success);
        let st = s.settings;
        assert_eq!(
            (
                st.heartbeat_ms,
                st.grace_ms,
                st.backoff_ms,
                st.backoff_max_ms
            ),
            (5_000, 1_000, 2_000, 60_000)
        );
        assert_eq!(st.liveness, LivenessMode::Output);
        let b = s.breaker.as_ref().unwrap();
        assert_eq!(b.key.as_str(), "evals");
        assert_eq!(b.policy.max_failures, Some(5));
        assert_eq!(b.policy.cooldown, Some(Duration::from_secs(600)));

        let report = p.jobs.last().unwrap();
        assert_eq!(report.name.as_str(), "report");
        assert_eq!(report.run, ["sh", "-c", "echo all done"]);
        assert_eq!(report.after.len(), 18, "report waits for every solve");
        assert!(report.after.iter().all(|d| d.when == AfterCondition::Done));
    }

    #[test]
    fn a_minimal_plan_gets_run_defaults() {
        let p = parse("jobs:\n  a: {run: [true]}\n").unwrap();
        assert_eq!(p.repeat, 1);
        assert!(p.concurrency >= 1);
        assert!(p.halt.is_none() && p.worktree.is_none());
        let s = p.jobs[0].settings;
        assert_eq!(
            (s.stale_ms, s.heartbeat_ms, s.grace_ms),
            (60_000, 10_000, 5_000)
        );
        assert_eq!(s.timeout_ms, None);
        assert_eq!(s.liveness, LivenessMode::Auto);
        let p = parse("defaults: {stale: 2s}\njobs:\n  a: {run: [true]}\n").unwrap();
        assert_eq!(
            p.jobs[0].settings.heartbeat_ms, 2_000,
            "heartbeat follows a short stale"
        );
    }

    #[test]
    fn an_unknown_key_is_refused_at_its_line_and_column() {
        let e = error("concurrency: 2\njobs:\n  a:\n    run: [true]\n    retires: 2\n");
        assert!(e.starts_with("plan.yaml:5:5:"), "{e}");
        assert!(e.contains("retires"), "{e}");
        let e = error("concurency: 2\njobs:\n  a: {run: [true]}\n");
        assert!(e.starts_with("plan.yaml:1:1:"), "{e}");
        let e = error("defaults: {colour: red}\njobs:\n  a: {run: [true]}\n");
        assert!(e.starts_with("plan.yaml:1:"), "{e}");
        assert!(e.contains("colour"), "{e}");
        let e = error("worktree: {repo: ., branch: x}\njobs:\n  a: {run: [true]}\n");
        assert!(e.contains("branch"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn malformed_yaml_and_wrong_types_name_the_place() {
        for (text, at, needle) in [
            ("jobs:\n  a: {run: [true]\n", "plan.yaml:", ""),
            ("jobs:\n  a: {run: 3}\n", "plan.yaml:2:", "list of strings"),
            ("jobs:\n  a: {run: []}\n", "plan.yaml:2:", "program"),
            (
                "jobs:\n  a: {run: [x]}\n  a: {run: [y]}\n",
                "plan.yaml:3:3:",
                "duplicate",
            ),
            (
                "concurrency: many\njobs:\n  a: {run: [x]}\n",
                "plan.yaml:1:14:",
                "",
            ),
            (
                "concurrency: 0\njobs:\n  a: {run: [x]}\n",
                "plan.yaml:1:",
                "at least 1",
            ),
            (
                "repeat: 0\njobs:\n  a: {run: [x]}\n",
                "plan.yaml:1:",
                "at least 1",
            ),
            ("jobs: {}\n", "plan.yaml:1:", "no jobs"),
            ("concurrency: 1\n", "plan.yaml:1:1:", "jobs"),
            ("", "plan.yaml:1:1:", ""),
        ] {
            let e = error(text);
            assert!(e.starts_with(at), "{text:?}: {e}");
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn durations_are_validated_where_they_are_written() {
        let e = error("jobs:\n  a: {run: [x], timeout: 10}\n");
        assert!(e.starts_with("plan.yaml:2:"), "{e}");
        assert!(e.contains("invalid duration"), "{e}");
        let e = error("defaults:\n  stale: 0s\njobs:\n  a: {run: [x]}\n");
        assert!(e.starts_with("plan.yaml:2:"), "{e}");
        assert!(e.contains("longer than zero"), "{e}");
        let e = error("jobs:\n  a: {run: [x], stale: 1s, heartbeat: 5s}\n");
        assert!(
            e.contains("heartbeat (5s) must not be longer than stale (1s)"),
            "{e}"
        );
        assert!(error("jobs:\n  a: {run: [x], grace: soon}\n").contains("invalid duration"));
    }

    #[test]
    fn unknown_placeholders_are_refused_at_their_string() {
        let e = error("matrix: {agent: [a]}\njobs:\n  a:\n    run: [x, \"{agnet}\"]\n");
        assert!(e.starts_with("plan.yaml:4:14:"), "{e}");
        assert!(e.contains("unknown placeholder {agnet}"), "{e}");
        let e = error("jobs:\n  a: {run: \"echo ${HOME}\"}\n");
        assert!(e.contains("{HOME}"), "{e}");
        assert!(parse("jobs:\n  a: {run: \"echo ${{HOME}}\"}\n").is_ok());
        for field in [
            "name: \"{x}\"",
            "judge: [\"{x}\"]",
            "env: {A: \"{x}\"}",
            "cwd: \"{x}\"",
        ] {
            let e = error(&format!("jobs:\n  a:\n    run: [x]\n    {field}\n"));
            assert!(e.starts_with("plan.yaml:4:"), "{field}: {e}");
            assert!(e.contains("unknown placeholder {x}"), "{field}: {e}");
        }
    }

    #[test]
    fn bad_values_are_refused_with_a_reason() {
        for (extra, needle) in [
            ("halt: {fail: lots}\n", "halt.fail"),
            ("halt: {fail: 0}\n", "halt.fail"),
            ("halt: {fail: 120%}\n", "halt.fail"),
            ("halt: {fail: 1, when: later}\n", "later"),
            ("worktree: {keep: some}\n", "some"),
            ("worktree: {ref: \"-x\"}\n", "not a git ref"),
            ("matrix: {repeat: [1]}\n", "not `repeat`"),
            ("matrix: {\"a b\": [1]}\n", "axis name"),
            ("matrix: {a: []}\n", "at least one value"),
            ("matrix: {a: [1, 1]}\n", "appears twice"),
        ] {
            let e = error(&format!("{extra}jobs:\n  j: {{run: [x]}}\n"));
            assert!(e.contains(needle), "{extra:?}: {e}");
            assert!(e.starts_with("plan.yaml:1:"), "{extra:?}: {e}");
        }
        for (job, needle) in [
            ("cost: \"a..b\"", "dotted path"),
            ("group: \"gpu:0\"", "group"),
            ("group: \"-x\"", "group"),
            ("breaker: \"a b\"", "breaker key"),
            ("max_failures: 2", "needs a breaker"),
            ("after: [\"x:maybe\"]", "unknown condition"),
            ("worktree: true", "top-level `worktree:`"),
            ("env: {\"A=B\": x}", "not a variable name"),
        ] {
            let e = error(&format!("jobs:\n  j:\n    run: [x]\n    {job}\n"));
            assert!(e.contains(needle), "{job}: {e}");
            assert!(e.starts_with("plan.yaml:4:"), "{job}: {e}");
        }
        let e = error("jobs:\n  \"bad key\": {run: [x]}\n");
        assert!(e.starts_with("plan.yaml:2:3:"), "{e}");
    }

    #[test]
    fn a_group_has_one_size() {
        let e = error("jobs:\n  a: {run: [x], group: gpu}\n  b: {run: [x], group: \"gpu:2\"}\n");
        assert!(e.starts_with("plan.yaml:3:3:"), "{e}");
        assert!(
            e.contains("group gpu has size 2 here but 1 in jobs.a"),
            "{e}"
        );
    }

    #[test]
    fn cost_paths_read_numbers_from_objects_and_arrays() {
        let json = serde_json::json!({"usage": {"cost_usd": 0.25}, "runs": [{"c": 2}], "s": "1"});
        let read = |p: &str| CostPath::parse(p).unwrap().read(&json);
        assert_eq!(read("usage.cost_usd"), Some(0.25));
        assert_eq!(read("runs.0.c"), Some(2.0));
        assert_eq!(read("runs.1.c"), None);
        assert_eq!(read("s"), None, "a string is not a cost");
        assert_eq!(read("usage.missing"), None);
        assert!(CostPath::parse("").is_err());
        assert!(CostPath::parse(".a").is_err());
    }

    #[test]
    fn a_missing_file_is_a_read_error_naming_it() {
        let e = Plan::load(Path::new("/nonexistent/plan.yaml")).unwrap_err();
        assert!(matches!(e, PlanError::Read { .. }));
        assert!(e.to_string().contains("/nonexistent/plan.yaml"), "{e}");
    }
}
