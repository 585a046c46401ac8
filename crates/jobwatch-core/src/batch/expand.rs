//! Expanding a plan's job templates over the matrix and `repeat` into
//! concrete jobs, and wiring their dependencies.
//!
//! A job is expanded over the axes its templates name (`name`, `run`,
//! `judge`, `env`, `cwd`), and over `repeat` when they name `{repeat}`; a
//! job that names neither runs once. Its default name is its key followed by
//! those values and the repetition: `solve-alpha-t1-2`.
//!
//! `after: [b]` in job `a` makes each job of `a` wait for the jobs of `b`
//! that agree with it on every axis both use (and on the repetition, when
//! both are repeated): `solve-alpha-t1-2` after `build` waits for
//! `build-alpha` only; `report` after `solve` waits for every `solve`.

use std::collections::{HashMap, HashSet};

use super::plan::{
    AfterCondition, Axis, Cell, CostPath, Dependency, Group, JobSpec, Judge, Loc, MAX_JOBS,
    Problem, judge_name,
};
use super::template::{Template, Values};
use crate::breaker::BreakerSpec;
use crate::model::{JobName, Settings};

/// One job of `jobs:` as parsed, before expansion.
#[derive(Debug, Clone)]
pub(super) struct JobTemplate {
    pub key: String,
    pub key_loc: Loc,
    pub name: Option<(Template, Loc)>,
    pub run: Vec<Template>,
    pub judge: Option<Vec<Template>>,
    pub env: Vec<(String, Template)>,
    pub cwd: Option<Template>,
    pub cost: Option<CostPath>,
    pub group: Option<Group>,
    pub after: Vec<(String, AfterCondition, Loc)>,
    pub settings: Settings,
    pub breaker: Option<BreakerSpec>,
    pub worktree: bool,
}

impl JobTemplate {
    fn templates(&self) -> impl Iterator<Item = &Template> {
        self.name
            .iter()
            .map(|(t, _)| t)
            .chain(&self.run)
            .chain(self.judge.iter().flatten())
            .chain(self.env.iter().map(|(_, t)| t))
            .chain(&self.cwd)
    }

    /// Indices (in matrix order) of the axes its templates name.
    fn used_axes(&self, axes: &[Axis]) -> Vec<usize> {
        let named: HashSet<&str> = self.templates().flat_map(Template::axes).collect();
        (0..axes.len())
            .filter(|i| named.contains(axes[*i].name.as_str()))
            .collect()
    }

    fn uses_repeat(&self) -> bool {
        self.templates().any(Template::uses_repeat)
    }
}

struct Binding<'a> {
    cell: &'a Cell,
    repeat: Option<u32>,
}

impl Values for Binding<'_> {
    fn axis(&self, axis: &str) -> &str {
        self.cell.get(axis).unwrap_or_default()
    }
    fn repeat(&self) -> Option<u32> {
        self.repeat
    }
}

/// Expands every template; checks dependencies, name validity and
/// uniqueness.
pub(super) fn expand(
    templates: &[JobTemplate],
    axes: &[Axis],
    repeat: u32,
) -> Result<Vec<JobSpec>, Problem> {
    check_dependencies(templates)?;
    let shapes: Vec<(Vec<usize>, bool)> = templates
        .iter()
        .map(|t| (t.used_axes(axes), t.uses_repeat()))
        .collect();
    check_size(templates, &shapes, axes, repeat)?;
    let mut jobs = Vec::new();
    let mut by_key: HashMap<&str, Vec<usize>> = HashMap::new();
    for (t, (used, repeated)) in templates.iter().zip(&shapes) {
        let repeats: Vec<Option<u32>> = if *repeated {
            (1..=repeat).map(Some).collect()
        } else {
            vec![None]
        };
        for r in repeats {
            for cell in cells(axes, used) {
                by_key.entry(&t.key).or_default().push(jobs.len());
                jobs.push(concrete(t, cell, r)?);
            }
        }
    }
    check_unique(templates, &jobs)?;
    for (t, (used, repeated)) in templates.iter().zip(&shapes) {
        for (target, when, _) in &t.after {
            let ti = templates
                .iter()
                .position(|x| &x.key == target)
                .expect("checked");
            let (t_used, t_repeated) = &shapes[ti];
            let shared: Vec<&str> = used
                .iter()
                .filter(|i| t_used.contains(i))
                .map(|i| axes[*i].name.as_str())
                .collect();
            let both_repeated = *repeated && *t_repeated;
            let key_of = |j: &JobSpec| -> (Vec<String>, Option<u32>) {
                let values = shared
                    .iter()
                    .map(|a| j.cell.get(a).unwrap_or_default().to_owned())
                    .collect();
                (values, if both_repeated { j.repeat } else { None })
            };
            let mut targets: HashMap<(Vec<String>, Option<u32>), Vec<usize>> = HashMap::new();
            for &i in &by_key[target.as_str()] {
                targets.entry(key_of(&jobs[i])).or_default().push(i);
            }
            for &i in &by_key[t.key.as_str()] {
                let deps: Vec<Dependency> = targets
                    .get(&key_of(&jobs[i]))
                    .into_iter()
                    .flatten()
                    .map(|&d| Dependency {
                        name: jobs[d].name.clone(),
                        index: d,
                        when: *when,
                    })
                    .collect();
                jobs[i].after.extend(deps);
            }
        }
    }
    Ok(jobs)
}

/// Every `after` names a job key, and the keys' dependencies form no cycle.
fn check_dependencies(templates: &[JobTemplate]) -> Result<(), Problem> {
    let index: HashMap<&str, usize> = templates
        .iter()
        .enumerate()
        .map(|(i, t)| (t.key.as_str(), i))
        .collect();
    for t in templates {
        for (target, _, loc) in &t.after {
            if !index.contains_key(target.as_str()) {
                let keys: Vec<&str> = templates.iter().map(|t| t.key.as_str()).collect();
                return Err(Problem(
                    *loc,
                    format!(
                        "jobs.{}: after names unknown job {target:?} (jobs: {})",
                        t.key,
                        keys.join(", ")
                    ),
                ));
            }
        }
    }
    // Depth-first search; a key met again while on the path closes a cycle.
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    fn visit(
        i: usize,
        templates: &[JobTemplate],
        index: &HashMap<&str, usize>,
        marks: &mut [Mark],
        path: &mut Vec<usize>,
    ) -> Result<(), Problem> {
        marks[i] = Mark::OnPath;
        path.push(i);
        for (target, _, loc) in &templates[i].after {
            let j = index[target.as_str()];
            match marks[j] {
                Mark::OnPath => {
                    let start = path.iter().position(|&p| p == j).expect("on path");
                    let mut cycle: Vec<&str> = path[start..]
                        .iter()
                        .map(|&p| templates[p].key.as_str())
                        .collect();
                    cycle.push(&templates[j].key);
                    return Err(Problem(
                        *loc,
                        format!(
                            "jobs.{}: dependency cycle: {} (each waits for the next)",
                            templates[i].key,
                            cycle.join(" -> ")
                        ),
                    ));
                }
                Mark::New => visit(j, templates, index, marks, path)?,
                Mark::Done => {}
            }
        }
        path.pop();
        marks[i] = Mark::Done;
        Ok(())
    }
    let mut marks = vec![Mark::New; templates.len()];
    for i in 0..templates.len() {
        if marks[i] == Mark::New {
            visit(i, templates, &index, &mut marks, &mut Vec::new())?;
        }
    }
    Ok(())
}

fn check_size(
    templates: &[JobTemplate],
    shapes: &[(Vec<usize>, bool)],
    axes: &[Axis],
    repeat: u32,
) -> Result<(), Problem> {
    let mut total: usize = 0;
    for (t, (used, repeated)) in templates.iter().zip(shapes) {
        let mut n: usize = if *repeated { repeat as usize } else { 1 };
        for &i in used {
            n = n.saturating_mul(axes[i].values.len());
        }
        total = total.saturating_add(n);
        if total > MAX_JOBS {
            return Err(Problem(
                t.key_loc,
                format!(
                    "jobs.{}: the plan expands into more than {MAX_JOBS} jobs; split it",
                    t.key
                ),
            ));
        }
    }
    Ok(())
}

/// Every combination of the `used` axes' values, first axis slowest.
fn cells(axes: &[Axis], used: &[usize]) -> Vec<Cell> {
    let mut out = vec![Cell::default()];
    for &i in used {
        let axis = &axes[i];
        out = out
            .into_iter()
            .flat_map(|cell| {
                axis.values.iter().map(move |v| {
                    let mut c = cell.clone();
                    c.0.push((axis.name.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    out
}

fn concrete(t: &JobTemplate, cell: Cell, repeat: Option<u32>) -> Result<JobSpec, Problem> {
    let b = Binding {
        cell: &cell,
        repeat,
    };
    let (text, loc) = match &t.name {
        Some((name, loc)) => (name.render(&b), *loc),
        None => (default_name(&t.key, &cell, repeat), t.key_loc),
    };
    let name = JobName::parse(&text).map_err(|e| {
        let fix = if t.name.is_some() {
            "change its name template"
        } else {
            "give it a `name` template"
        };
        Problem(loc, format!("jobs.{}: {e}; {fix}", t.key))
    })?;
    let judge = match &t.judge {
        Some(run) => Some(Judge {
            name: judge_name(&name).map_err(|e| Problem(loc, format!("jobs.{}: {e}", t.key)))?,
            run: run.iter().map(|a| a.render(&b)).collect(),
        }),
        None => None,
    };
    Ok(JobSpec {
        key: t.key.clone(),
        run: t.run.iter().map(|a| a.render(&b)).collect(),
        judge,
        cost: t.cost.clone(),
        group: t.group.clone(),
        env: t
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.render(&b)))
            .collect(),
        cwd: t.cwd.as_ref().map(|c| c.render(&b).into()),
        settings: t.settings,
        breaker: t.breaker.clone(),
        worktree: t.worktree,
        after: Vec::new(),
        name,
        cell,
        repeat,
    })
}

fn default_name(key: &str, cell: &Cell, repeat: Option<u32>) -> String {
    let mut s = key.to_owned();
    for (_, v) in &cell.0 {
        s.push('-');
        s.push_str(v);
    }
    if let Some(r) = repeat {
        s.push('-');
        s.push_str(&r.to_string());
    }
    s
}

/// No two jobs (or judges) share a name.
fn check_unique(templates: &[JobTemplate], jobs: &[JobSpec]) -> Result<(), Problem> {
    let loc_of = |key: &str| {
        let t = templates.iter().find(|t| t.key == key).expect("a key");
        t.name.as_ref().map_or(t.key_loc, |(_, l)| *l)
    };
    let mut seen: HashMap<&JobName, &str> = HashMap::new();
    let judges = jobs
        .iter()
        .filter_map(|j| Some((&j.judge.as_ref()?.name, &j.key)));
    for (name, key) in jobs.iter().map(|j| (&j.name, &j.key)).chain(judges) {
        if let Some(other) = seen.insert(name, key) {
            let hint = if other == key {
                "put every axis the job uses, and {repeat} when it is repeated, in its name"
            } else {
                "give the jobs distinct names"
            };
            return Err(Problem(
                loc_of(key),
                format!("jobs.{key}: job name {name} is used twice (also by jobs.{other}); {hint}"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use proptest::prelude::*;

    use super::super::plan::{Plan, PlanError};
    use super::*;

    fn parse(text: &str) -> Result<Plan, PlanError> {
        Plan::parse(text, Path::new("plan.yaml"), Path::new("/base"))
    }

    fn names(p: &Plan) -> Vec<&str> {
        p.jobs.iter().map(|j| j.name.as_str()).collect()
    }

    #[test]
    fn a_job_expands_over_the_axes_it_names_and_repeat_only() {
        let p = parse(
            "matrix: {agent: [a, b], task: [t1, t2]}\nrepeat: 2\njobs:\n  \
             build: {run: [\"make-{agent}\"]}\n  \
             solve: {run: [\"{agent}\", \"{task}\"], after: [build]}\n  \
             bench: {run: [x], name: \"bench-{repeat}\"}\n  \
             once: {run: [x]}\n",
        )
        .unwrap();
        assert_eq!(
            names(&p),
            [
                "build-a",
                "build-b", // not repeated: no {repeat}
                "solve-a-t1",
                "solve-a-t2",
                "solve-b-t1",
                "solve-b-t2",
                "bench-1",
                "bench-2",
                "once",
            ]
        );
        let solve_b_t2 = &p.jobs[5];
        let deps: Vec<&str> = solve_b_t2.after.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(deps, ["build-b"], "a dependency matches on shared axes");
        assert_eq!(solve_b_t2.after[0].index, 1);
    }

    #[test]
    fn repeated_jobs_wait_for_the_same_repetition() {
        let p = parse(
            "matrix: {t: [x, y]}\nrepeat: 2\njobs:\n  \
             a: {run: [\"{t}\", \"{repeat}\"]}\n  \
             b: {run: [\"{repeat}\"], after: [a]}\n  \
             c: {run: [z], after: [\"b:done\"]}\n",
        )
        .unwrap();
        let job = |n: &str| p.job(&JobName::parse(n).unwrap()).unwrap();
        let deps =
            |n: &str| -> Vec<String> { job(n).after.iter().map(|d| d.name.to_string()).collect() };
        assert_eq!(names(&p)[..4], ["a-x-1", "a-y-1", "a-x-2", "a-y-2"]);
        assert_eq!(deps("b-2"), ["a-x-2", "a-y-2"]);
        assert_eq!(deps("c"), ["b-1", "b-2"]);
        assert_eq!(job("c").after[0].when, AfterCondition::Done);
    }

    #[test]
    fn unknown_dependencies_and_cycles_are_refused_with_the_cycle() {
        let e = parse("jobs:\n  a: {run: [x], after: [setpu]}\n  setup: {run: [x]}\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("plan.yaml:2:25:"), "{e}");
        assert!(e.contains("unknown job \"setpu\" (jobs: a, setup)"), "{e}");
        let e = parse(
            "jobs:\n  a: {run: [x], after: [b]}\n  b: {run: [x], after: [c]}\n  \
             c: {run: [x], after: [a]}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("dependency cycle: a -> b -> c -> a"), "{e}");
        assert!(e.starts_with("plan.yaml:4:"), "{e}");
        let e = parse("jobs:\n  a: {run: [x], after: [a]}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("dependency cycle: a -> a"), "{e}");
    }

    #[test]
    fn names_must_be_valid_and_unique() {
        let e = parse("matrix: {m: [\"gpt/4\"]}\njobs:\n  a: {run: [\"{m}\"]}\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("plan.yaml:3:3:"), "{e}");
        assert!(
            e.contains("character '/'") && e.contains("give it a `name` template"),
            "{e}"
        );
        let e = parse("matrix: {m: [a, b]}\njobs:\n  a:\n    name: same\n    run: [\"{m}\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("plan.yaml:4:11:"), "{e}");
        assert!(e.contains("job name same is used twice"), "{e}");
        let e = parse("jobs:\n  a: {run: [x], judge: [y]}\n  a.judge: {run: [x]}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a.judge is used twice"), "{e}");
        let long = "x".repeat(60);
        let e = parse(&format!("jobs:\n  {long}: {{run: [x], judge: [y]}}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("too long for its judge"), "{e}");
    }

    #[test]
    fn a_plan_too_large_is_refused_before_expanding() {
        let values: Vec<String> = (0..400).map(|i| i.to_string()).collect();
        let text = format!(
            "matrix: {{a: [{v}], b: [{v}]}}\njobs:\n  j: {{run: [\"{{a}}{{b}}\"]}}\n",
            v = values.join(",")
        );
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("more than 100000 jobs"), "{e}");
    }

    /// A random plan: axes with small distinct values, jobs each naming a
    /// random subset of them (and maybe {repeat}), each after some earlier
    /// ones, with default or explicit names.
    fn arb_plan() -> impl Strategy<Value = (String, HashMap<String, Vec<String>>)> {
        let axis_values = prop::collection::btree_set("[a-z0-9]{1,3}", 1..4);
        let axes = prop::collection::vec(axis_values, 0..4);
        let job = (
            prop::collection::vec(any::<bool>(), 4),
            any::<bool>(),
            any::<bool>(),
            prop::collection::vec(any::<bool>(), 5),
            any::<bool>(),
        );
        (axes, prop::collection::vec(job, 1..6), 1u32..4).prop_map(|(axes, jobs, repeat)| {
            let mut text = String::from("matrix:\n");
            for (i, values) in axes.iter().enumerate() {
                let v: Vec<&str> = values.iter().map(String::as_str).collect();
                text.push_str(&format!("  x{i}: [{}]\n", v.join(", ")));
            }
            if axes.is_empty() {
                text = String::new();
            }
            text.push_str(&format!("repeat: {repeat}\njobs:\n"));
            let mut after_keys = HashMap::new();
            for (j, (uses, rep, named, after, done)) in jobs.iter().enumerate() {
                let mut placeholders: Vec<String> = (0..axes.len())
                    .filter(|i| uses[*i])
                    .map(|i| format!("{{x{i}}}"))
                    .collect();
                if *rep {
                    placeholders.push("{repeat}".into());
                }
                let run: Vec<String> = placeholders.iter().map(|p| format!("\"{p}\"")).collect();
                text.push_str(&format!("  j{j}:\n    run: [echo, {}]\n", run.join(", ")));
                if *named {
                    // Placeholders reversed, joined by "_": still unique.
                    let rev: Vec<&str> = placeholders.iter().rev().map(String::as_str).collect();
                    text.push_str(&format!("    name: \"n{j}_{}\"\n", rev.join("_")));
                }
                let keys: Vec<usize> = (0..j).filter(|k| after[*k % after.len()]).collect();
                after_keys.insert(
                    format!("j{j}"),
                    keys.iter().map(|k| format!("j{k}")).collect(),
                );
                let deps: Vec<String> = keys
                    .iter()
                    .map(|k| {
                        if *done {
                            format!("\"j{k}:done\"")
                        } else {
                            format!("j{k}")
                        }
                    })
                    .collect();
                if !deps.is_empty() {
                    text.push_str(&format!("    after: [{}]\n", deps.join(", ")));
                }
            }
            (text, after_keys)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn expansion_yields_unique_names_and_consistent_dependencies((text, after_keys) in arb_plan()) {
            let plan = parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            let mut seen = HashSet::new();
            for j in &plan.jobs {
                prop_assert!(seen.insert(j.name.clone()), "duplicate {}", j.name);
            }
            for (i, j) in plan.jobs.iter().enumerate() {
                let keys_after = &after_keys[&j.key];
                for d in &j.after {
                    prop_assert!(d.index != i, "self-dependency");
                    let dep = &plan.jobs[d.index];
                    prop_assert_eq!(&dep.name, &d.name);
                    // Dependencies are on a key this job names, and agree
                    // on every axis both use and on the repetition.
                    prop_assert!(
                        keys_after.contains(&dep.key),
                        "{} depends on {} of an unnamed key", j.name, dep.name
                    );
                    for (axis, v) in &dep.cell.0 {
                        if let Some(mine) = j.cell.get(axis) {
                            prop_assert_eq!(mine, v.as_str());
                        }
                    }
                    if let (Some(a), Some(b)) = (j.repeat, dep.repeat) {
                        prop_assert_eq!(a, b);
                    }
                }
                // And every matching job of a named key is depended on.
                for key in keys_after {
                    let matching = plan.jobs.iter().filter(|o| {
                        &o.key == key
                            && o.cell.0.iter().all(|(a, v)| j.cell.get(a).is_none_or(|m| m == v))
                            && (j.repeat.is_none() || o.repeat.is_none() || j.repeat == o.repeat)
                    }).count();
                    let have = j.after.iter().filter(|d| &plan.jobs[d.index].key == key).count();
                    prop_assert_eq!(matching, have, "{} after {}", j.name, key);
                }
            }
            // The dependency graph has a topological order: dependencies
            // can always finish first.
            let mut done = vec![false; plan.jobs.len()];
            let mut progress = true;
            while progress {
                progress = false;
                for (i, j) in plan.jobs.iter().enumerate() {
                    if !done[i] && j.after.iter().all(|d| done[d.index]) {
                        done[i] = true;
                        progress = true;
                    }
                }
            }
            prop_assert!(done.iter().all(|d| *d), "a dependency cycle slipped through");
        }
    }
}
