//! What the hooks say to the model, bounded in bytes whatever the job
//! printed or was named: the outcome line of `stop` (at most
//! [`MAX_SUCCESS_LINE`] bytes on success, [`MAX_FAILURE_LINE`] with a tail
//! on anything else) and the context of `session-start` (at most
//! [`MAX_CONTEXT`] bytes). Pure functions of what [`super::look`] found.

use serde::Serialize;

use super::look::Ending;

/// Most bytes of the outcome line of a successful job.
pub const MAX_SUCCESS_LINE: usize = 300;
/// Most bytes of the outcome line of any other outcome, tail included.
pub const MAX_FAILURE_LINE: usize = 1024;
/// Most bytes of `session-start`'s `additionalContext`.
pub const MAX_CONTEXT: usize = 300;
/// Longest tail line kept, in bytes.
const MAX_TAIL_LINE: usize = 160;
/// Longest reason kept, in bytes.
const MAX_REASON: usize = 160;

const LEAD: &str = "jobwatch: a background job of this session ended: ";

/// The one JSON object of an outcome line (the shape of `wait`'s reports).
#[derive(Debug, Serialize)]
struct Report<'a> {
    name: &'a str,
    outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    log: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tail: Vec<String>,
}

/// The line `stop` wakes the model with: what ended and how, as one JSON
/// object after a short lead, and how many of the session's jobs still
/// run. Within [`MAX_SUCCESS_LINE`] or [`MAX_FAILURE_LINE`] bytes: long
/// tail lines, reason and log path are cut, oldest tail lines dropped.
pub fn wake_line(e: &Ending, still_running: usize) -> String {
    let budget = if e.succeeded() {
        MAX_SUCCESS_LINE
    } else {
        MAX_FAILURE_LINE
    };
    let suffix = match still_running {
        0 => String::new(),
        1 => " (1 more job of this session still runs; its outcome wakes you too)".into(),
        n => format!(" ({n} more jobs of this session still run; each outcome wakes you too)"),
    };
    let mut report = Report {
        name: &e.name,
        outcome: &e.outcome,
        exit_code: e.exit_code,
        signal: e.signal,
        duration_ms: e.duration_ms,
        reason: e.reason.as_deref().map(|r| cut(&one_line(r), MAX_REASON)),
        log: e.log.display().to_string(),
        tail: e
            .tail
            .iter()
            .map(|l| cut(&one_line(l), MAX_TAIL_LINE))
            .collect(),
    };
    let render = |r: &Report, suffix: &str| {
        format!(
            "{LEAD}{}{suffix}",
            serde_json::to_string(r).expect("a report serializes")
        )
    };
    let fits = |r: &Report, suffix: &str| render(r, suffix).len() <= budget;
    while !fits(&report, &suffix) && !report.tail.is_empty() {
        report.tail.remove(0);
    }
    if !fits(&report, &suffix) {
        report.log = elide_path(&report.log);
    }
    if !fits(&report, &suffix) {
        report.reason = None;
    }
    if fits(&report, &suffix) {
        return render(&report, &suffix);
    }
    if fits(&report, "") {
        return render(&report, "");
    }
    // Only a pathological log path gets here: name and outcome are short.
    report.log = String::new();
    cut(&render(&report, ""), budget)
}

/// `session-start`'s context: the session's running jobs and the outcomes
/// it has not been told, within [`MAX_CONTEXT`] bytes. Returns the text
/// (`None` when there is nothing to say) and how many of `ended` it names
/// (those count as reported; the rest are reported by a later `stop`).
pub fn context(running: &[String], ended: &[Ending]) -> (Option<String>, usize) {
    if running.is_empty() && ended.is_empty() {
        return (None, 0);
    }
    let (mut r, mut e) = (running.len(), ended.len());
    loop {
        let text = render_context(running, r, ended, e);
        if text.len() <= MAX_CONTEXT || (r == 0 && e == 0) {
            return (Some(cut(&text, MAX_CONTEXT)), e);
        }
        if r > e {
            r -= 1;
        } else {
            e -= 1;
        }
    }
}

fn render_context(running: &[String], r: usize, ended: &[Ending], e: usize) -> String {
    let mut s = String::from("jobwatch: background jobs this session started:");
    if !running.is_empty() {
        s.push_str(&format!(
            " running: {};",
            listed(running.iter().take(r).cloned(), running.len() - r)
        ));
    }
    if !ended.is_empty() {
        let items = ended.iter().take(e).map(describe);
        s.push_str(&format!(
            " ended, not yet reported: {};",
            listed(items, ended.len() - e)
        ));
    }
    if !running.is_empty() {
        s.push_str(" end your turn and each outcome wakes you.");
    } else {
        s.pop();
        s.push('.');
    }
    s
}

fn listed(items: impl Iterator<Item = String>, more: usize) -> String {
    let mut parts: Vec<String> = items.collect();
    if more > 0 {
        parts.push(format!("+{more} more"));
    }
    parts.join(", ")
}

fn describe(e: &Ending) -> String {
    match (e.exit_code, e.signal) {
        _ if e.succeeded() => format!("{} success", e.name),
        (Some(c), _) => format!("{} {} (exit {c})", e.name, e.outcome),
        (None, Some(s)) => format!("{} {} (signal {s})", e.name, e.outcome),
        (None, None) => format!("{} {}", e.name, e.outcome),
    }
}

/// `s` on one line: control characters (newlines, escapes) become spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `s` cut to at most `max` bytes at a character boundary, marked `…`.
pub fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A long path as `…/` and its last two components.
fn elide_path(p: &str) -> String {
    let parts: Vec<&str> = p.rsplitn(3, '/').collect();
    match parts.as_slice() {
        [file, parent, _] => cut(&format!("…/{parent}/{file}"), 120),
        _ => cut(p, 120),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ending(outcome: &str, tail: Vec<String>) -> Ending {
        Ending {
            name: "build".into(),
            outcome: outcome.into(),
            exit_code: Some(if outcome == "success" { 0 } else { 2 }),
            signal: None,
            duration_ms: Some(81234),
            reason: None,
            log: "/home/me/.local/state/jobwatch/build.log".into(),
            tail,
        }
    }

    fn report_of(line: &str) -> serde_json::Value {
        let json = line.strip_prefix(LEAD).expect("starts with the lead");
        let end = json.rfind('}').unwrap();
        serde_json::from_str(&json[..=end]).unwrap()
    }

    #[test]
    fn a_success_line_is_one_short_json_report() {
        let line = wake_line(&ending("success", vec![]), 0);
        assert!(line.len() <= MAX_SUCCESS_LINE, "{} bytes", line.len());
        assert!(!line.contains('\n'));
        let r = report_of(&line);
        assert_eq!(r["name"], "build");
        assert_eq!(r["outcome"], "success");
        assert_eq!(r["exit_code"], 0);
        assert!(r.get("tail").is_none());
    }

    #[test]
    fn a_failure_line_keeps_the_newest_tail_lines_within_a_kilobyte() {
        let tail: Vec<String> = (1..=5)
            .map(|i| format!("line {i} {}", "x".repeat(300)))
            .collect();
        let line = wake_line(&ending("failed", tail), 2);
        assert!(line.len() <= MAX_FAILURE_LINE, "{} bytes", line.len());
        assert!(!line.contains('\n'));
        let r = report_of(&line);
        let kept = r["tail"].as_array().unwrap();
        assert!(!kept.is_empty() && kept.len() <= 5);
        assert!(kept.last().unwrap().as_str().unwrap().starts_with("line 5"));
        assert!(line.ends_with("each outcome wakes you too)"));
    }

    #[test]
    fn control_characters_in_the_tail_never_break_the_line() {
        let tail = vec!["a\rb\u{1b}[31mred\tc".to_owned()];
        let line = wake_line(&ending("failed", tail), 0);
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
    }

    #[test]
    fn a_huge_log_path_or_reason_still_fits() {
        let mut e = ending("success", vec![]);
        e.log = format!("/{}/jobs/build.log", "d".repeat(5000)).into();
        e.reason = Some("r".repeat(5000));
        let line = wake_line(&e, 3);
        assert!(line.len() <= MAX_SUCCESS_LINE, "{} bytes", line.len());
        assert!(line.contains("build.log"), "{line}");
        let mut e = ending("failed", vec!["é".repeat(900)]);
        e.log = "é".repeat(3000).into();
        let line = wake_line(&e, 0);
        assert!(line.len() <= MAX_FAILURE_LINE);
    }

    #[test]
    fn the_context_lists_running_and_unreported_jobs_within_its_budget() {
        let (text, named) = context(&["train".into()], &[ending("failed", vec![])]);
        let text = text.unwrap();
        assert!(text.contains("running: train"), "{text}");
        assert!(text.contains("build failed (exit 2)"), "{text}");
        assert_eq!(named, 1);
        assert_eq!(context(&[], &[]), (None, 0));

        let running: Vec<String> = (0..40)
            .map(|i| format!("job-{i:02}-{}", "n".repeat(20)))
            .collect();
        let ended: Vec<Ending> = (0..40).map(|_| ending("success", vec![])).collect();
        let (text, named) = context(&running, &ended);
        let text = text.unwrap();
        assert!(text.len() <= MAX_CONTEXT, "{} bytes: {text}", text.len());
        assert!(text.contains("more"), "{text}");
        assert!(named < ended.len());
        assert_eq!(text.matches("build success").count(), named);
    }
}
