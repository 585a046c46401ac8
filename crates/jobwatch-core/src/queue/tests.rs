//! The queue's decisions on plain data (a table of facts, a time), and
//! queuing on the memory store (foreground jobs: no process is started).

use std::collections::HashMap;

use super::decide::{self, Facts, Readiness, RunFact};
use super::*;
use crate::model::StatusWord;
use crate::store::Holder;
use crate::store::memory::MemoryStore;
use crate::store::memory::fixture::{ended, name, record};

/// Facts from a table: runs by `job_id` (absent: `Absent`), and which
/// starters (by PID) are alive.
#[derive(Default)]
struct Table {
    runs: HashMap<String, RunFact>,
    dead: Vec<i32>,
}

impl Table {
    fn with(mut self, job_id: &str, fact: RunFact) -> Self {
        self.runs.insert(job_id.to_owned(), fact);
        self
    }
}

impl Facts for Table {
    fn run(&mut self, _name: &JobName, job_id: Option<&str>) -> RunFact {
        job_id
            .and_then(|id| self.runs.get(id).cloned())
            .unwrap_or(RunFact::Absent)
    }
    fn alive(&mut self, starter: &Starter, _granted: u64) -> bool {
        !self.dead.contains(&starter.pid)
    }
}

fn starter(pid: i32) -> Starter {
    Starter {
        host: "h".into(),
        boot_id: "b".into(),
        pid,
        start_time: 1,
    }
}

fn waiting(n: &str, after: &[(&str, AfterWhen)]) -> Waiting {
    Waiting {
        name: name(n),
        job_id: format!("{n}-id"),
        after: after
            .iter()
            .map(|(d, when)| Dep {
                name: name(d),
                job_id: Some(format!("{d}-id")),
                when: *when,
            })
            .collect(),
        foreground: None,
    }
}

fn holding(n: &str, pid: i32) -> Holding {
    Holding {
        name: name(n),
        job_id: format!("{n}-id"),
        granted_unix_ms: 0,
        starter: starter(pid),
    }
}

fn doc(size: Option<u32>, holders: Vec<Holding>, waiting: Vec<Waiting>) -> QueueDoc {
    QueueDoc {
        version: QUEUE_VERSION,
        key: "g".into(),
        size,
        holders,
        waiting,
    }
}

/// Every waiting job of `names` is queued.
fn queued(names: &[&str]) -> Table {
    names.iter().fold(Table::default(), |t, n| {
        t.with(&format!("{n}-id"), RunFact::Queued)
    })
}

fn names(v: &[Holding]) -> Vec<&str> {
    v.iter().map(|h| h.name.as_str()).collect()
}

fn waiting_names(d: &QueueDoc) -> Vec<&str> {
    d.waiting.iter().map(|w| w.name.as_str()).collect()
}

#[test]
fn free_slots_go_to_the_first_waiting_jobs_and_the_rest_keep_their_order() {
    let me = starter(10);
    let d = doc(
        Some(2),
        vec![holding("run", 1)],
        vec![waiting("a", &[]), waiting("b", &[]), waiting("c", &[])],
    );
    let mut facts = queued(&["a", "b", "c"]).with("run-id", RunFact::Running);
    let plan = decide::decide(&d, &mut facts, &me, 5, true);
    assert_eq!(names(&plan.start), ["a"]);
    assert_eq!(plan.start[0].starter, me, "granted by this process");
    let new = plan.doc.unwrap();
    assert_eq!(names(&new.holders), ["run", "a"]);
    assert_eq!(waiting_names(&new), ["b", "c"]);
}

#[test]
fn an_ended_or_invalid_run_frees_its_slot_and_a_running_one_keeps_it() {
    let d = doc(
        Some(2),
        vec![holding("done", 1), holding("bad", 1)],
        vec![waiting("a", &[]), waiting("b", &[]), waiting("c", &[])],
    );
    let mut facts = queued(&["a", "b", "c"])
        .with("done-id", RunFact::Ended(Outcome::Failed))
        .with("bad-id", RunFact::Invalid("x".into()));
    let plan = decide::decide(&d, &mut facts, &starter(10), 5, true);
    assert_eq!(names(&plan.start), ["a", "b"]);
    assert_eq!(waiting_names(plan.doc.as_ref().unwrap()), ["c"]);

    // No limit: a started run holds nothing.
    let d = doc(None, vec![holding("run", 1)], vec![]);
    let mut facts = Table::default().with("run-id", RunFact::Running);
    let plan = decide::decide(&d, &mut facts, &starter(10), 5, true);
    assert!(plan.doc.unwrap().holders.is_empty());
}

#[test]
fn a_full_queue_reads_nothing_of_its_waiting_jobs_without_dependencies() {
    struct Counting(usize);
    impl Facts for Counting {
        fn run(&mut self, _: &JobName, _: Option<&str>) -> RunFact {
            self.0 += 1;
            RunFact::Running
        }
        fn alive(&mut self, _: &Starter, _: u64) -> bool {
            true
        }
    }
    let waiters = (0..1000).map(|i| waiting(&format!("w{i}"), &[])).collect();
    let d = doc(Some(1), vec![holding("run", 1)], waiters);
    let mut facts = Counting(0);
    let plan = decide::decide(&d, &mut facts, &starter(10), 5, true);
    assert!(!plan.acts() && plan.doc.is_none());
    assert_eq!(facts.0, 1, "only the holder was looked at");
}

#[test]
fn a_dependency_that_did_not_succeed_skips_the_job_and_done_runs_it_anyway() {
    let d = doc(
        None,
        vec![],
        vec![
            waiting("strict", &[("dep", AfterWhen::Success)]),
            waiting("loose", &[("dep", AfterWhen::Done)]),
        ],
    );
    let mut facts = queued(&["strict", "loose"]).with("dep-id", RunFact::Ended(Outcome::Skipped));
    let plan = decide::decide(&d, &mut facts, &starter(10), 5, true);
    assert_eq!(plan.end.len(), 1);
    assert_eq!(plan.end[0].name, name("strict"));
    assert_eq!(plan.end[0].outcome, Outcome::Skipped);
    assert!(plan.end[0].reason.contains("dep ended skipped"));
    assert_eq!(names(&plan.start), ["loose"]);
}

#[test]
fn a_job_waiting_for_its_dependency_lets_the_next_one_take_the_slot() {
    let d = doc(
        Some(1),
        vec![],
        vec![
            waiting("blocked", &[("dep", AfterWhen::Success)]),
            waiting("free", &[]),
        ],
    );
    let mut facts = queued(&["blocked", "free"]).with("dep-id", RunFact::Running);
    let plan = decide::decide(&d, &mut facts, &starter(10), 5, true);
    assert_eq!(names(&plan.start), ["free"]);
    assert_eq!(waiting_names(plan.doc.as_ref().unwrap()), ["blocked"]);
}

#[test]
fn runs_that_need_acting_on_are_handed_to_the_caller() {
    let d = doc(
        Some(3),
        vec![
            holding("gone", 1),
            holding("stuck", 1),
            holding("unstarted", 7),
        ],
        vec![waiting("w", &[("deadwrapper", AfterWhen::Success)])],
    );
    let mut facts = queued(&["w"])
        .with("gone-id", RunFact::Unfinished)
        .with("stuck-id", RunFact::Hung)
        .with("unstarted-id", RunFact::Queued)
        .with("deadwrapper-id", RunFact::Unfinished);
    facts.dead = vec![7];
    let plan = decide::decide(&d, &mut facts, &starter(10), 5, true);
    let finish: Vec<&str> = plan.finish.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(finish, ["gone", "deadwrapper"]);
    assert_eq!(plan.kill_hung[0].0, name("stuck"));
    assert_eq!(plan.end.len(), 1);
    assert_eq!(plan.end[0].name, name("unstarted"));
    assert_eq!(plan.end[0].outcome, Outcome::Lost);
    // Each keeps its turn until its run has an outcome.
    assert_eq!(plan.doc.map_or(3, |d| d.holders.len()), 3);
    assert!(plan.start.is_empty());
}

#[test]
fn foreground_jobs_are_granted_without_being_started_and_ended_when_their_process_is_gone() {
    let mut fg = waiting("fg", &[]);
    fg.foreground = Some(starter(20));
    let mut dead = waiting("dead", &[]);
    dead.foreground = Some(starter(21));
    let d = doc(None, vec![], vec![waiting("detached", &[]), fg, dead]);
    let mut facts = queued(&["detached", "fg", "dead"]);
    facts.dead = vec![21];
    // This process cannot start detached jobs: they wait.
    let plan = decide::decide(&d, &mut facts, &starter(10), 5, false);
    assert!(plan.start.is_empty());
    let new = plan.doc.unwrap();
    assert_eq!(names(&new.holders), ["fg"]);
    assert_eq!(new.holders[0].starter, starter(20));
    assert_eq!(plan.end[0].name, name("dead"));
    assert_eq!(plan.end[0].outcome, Outcome::Killed);
    assert_eq!(waiting_names(&new), ["detached", "dead"]);
}

#[test]
fn readiness_of_a_vanished_dependency_depends_on_what_it_had_to_do() {
    let dep = |when| Dep {
        name: name("d"),
        job_id: Some("d-id".into()),
        when,
    };
    let mut facts = Table::default();
    assert!(matches!(
        decide::readiness(&[dep(AfterWhen::Success)], &mut facts),
        Readiness::Skip(_)
    ));
    assert_eq!(
        decide::readiness(&[dep(AfterWhen::Done)], &mut facts),
        Readiness::Ready
    );
}

#[test]
fn a_cycle_is_found_with_its_path() {
    let edges: HashMap<JobName, Vec<JobName>> = [
        (name("b"), vec![name("c")]),
        (name("c"), vec![name("a")]),
        (name("x"), vec![]),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        decide::find_cycle(&name("a"), &[name("x"), name("b")], &edges),
        Some(vec![name("a"), name("b"), name("c"), name("a")])
    );
    assert_eq!(decide::find_cycle(&name("a"), &[name("x")], &edges), None);
}

#[test]
fn a_position_counts_from_one_among_the_waiting_and_zero_once_granted() {
    let d = doc(
        Some(1),
        vec![holding("h", 1)],
        vec![waiting("a", &[]), waiting("b", &[])],
    );
    assert_eq!(decide::position(&d, "h-id"), Some(0));
    assert_eq!(decide::position(&d, "b-id"), Some(2));
    assert_eq!(decide::position(&d, "zz"), None);
}

#[test]
fn the_options_parse_and_refuse_with_one_line_errors() {
    let a: After = "build:done".parse().unwrap();
    assert_eq!((a.name.as_str(), a.when), ("build", AfterWhen::Done));
    assert_eq!("b".parse::<After>().unwrap().when, AfterWhen::Success);
    assert!(
        "b:maybe"
            .parse::<After>()
            .unwrap_err()
            .contains("not success or done")
    );
    let s: SlotRequest = "gpu:4".parse().unwrap();
    assert_eq!((s.group.as_str(), s.size), ("gpu", Some(4)));
    assert_eq!("gpu".parse::<SlotRequest>().unwrap().size, None);
    for bad in ["gpu:0", "gpu:x", "../x:1"] {
        let e = bad.parse::<SlotRequest>().unwrap_err();
        assert!(e.contains("invalid slot") && !e.contains('\n'), "{e}");
    }
}

// ------------------------------------------------ on the memory store ---

fn fg_submit(store: &MemoryStore, n: &str, after: &[&str]) -> Result<Submitted, QueueError> {
    submit(
        store,
        Submit {
            spec: RunSpec::new(name(n), vec!["true".into()], std::env::temp_dir()),
            after: after.iter().map(|a| a.parse().unwrap()).collect(),
            slot: None,
            foreground: true,
            env: None,
        },
    )
}

#[test]
fn queuing_after_a_failed_run_ends_the_job_skipped_at_once_with_a_record() {
    let store = MemoryStore::new();
    let t0 = store.now();
    let dep = name("dep");
    store.put_record(&dep, ended(record("dep", "r1", t0), Outcome::Failed, t0));
    store.put_status(&dep, StatusWord::Failed);
    match fg_submit(&store, "job", &["dep"]).unwrap() {
        Submitted::Ended { .. } => {}
        other => panic!("not ended: {other:?}"),
    }
    let r = store.record(&name("job")).unwrap();
    assert_eq!(r.outcome, Some(Outcome::Skipped));
    assert_eq!(r.child_pid, None);
    assert_eq!(store.status(&name("job")), Some(StatusWord::Failed));
    assert!(pending(&store, &name("job")).is_none());
    assert!(read_queue(&store, AFTER_ONLY).unwrap().is_idle());
}

#[test]
fn queuing_after_a_running_job_waits_and_its_turn_comes_when_the_run_ends() {
    let store = MemoryStore::new();
    let t0 = store.now();
    let dep = name("dep");
    store.put_record(&dep, record("dep", "r1", t0));
    store.set_holder("r1", Holder::Alive);
    let spec = match fg_submit(&store, "job", &["dep"]).unwrap() {
        Submitted::Queued(p) => {
            assert_eq!(p.position, 1);
            assert!(describe(&p).contains("dep (running)"), "{}", describe(&p));
            p.job.spec
        }
        other => panic!("not queued: {other:?}"),
    };
    assert!(matches!(foreground_turn(&store, &spec), Turn::Waiting(_)));
    store.put_record(&dep, ended(record("dep", "r1", t0), Outcome::Success, t0));
    store.put_status(&dep, StatusWord::Success);
    assert!(matches!(foreground_turn(&store, &spec), Turn::Granted));
    assert_eq!(pending(&store, &name("job")).unwrap().position, 0);
}

#[test]
fn queuing_refuses_unknown_dependencies_cycles_and_a_second_queued_run() {
    let store = MemoryStore::new();
    let t0 = store.now();
    assert!(matches!(
        fg_submit(&store, "job", &["nosuch"]),
        Err(QueueError::Unknown { .. })
    ));
    assert!(matches!(
        fg_submit(&store, "job", &["job"]),
        Err(QueueError::Cycle { .. })
    ));
    store.put_record(&name("dep"), record("dep", "r1", t0));
    store.set_holder("r1", Holder::Alive);
    assert!(matches!(
        fg_submit(&store, "b", &["dep"]).unwrap(),
        Submitted::Queued(_)
    ));
    let e = fg_submit(&store, "b", &["dep"]).unwrap_err();
    assert!(matches!(e, QueueError::AlreadyQueued { .. }), "{e}");
    // c after b (queued), then b's name may not go after c: b is queued.
    assert!(matches!(
        fg_submit(&store, "c", &["b"]).unwrap(),
        Submitted::Queued(_)
    ));
    let e = fg_submit(&store, "d", &["c", "nosuch"]).unwrap_err();
    assert!(e.to_string().contains("no job named nosuch"), "{e}");
    assert!(pending(&store, &name("d")).is_none(), "nothing was queued");
}
