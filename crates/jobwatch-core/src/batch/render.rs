//! A batch's results as text: an aligned table for a terminal, JSON lines
//! (one per job, then one summary), Markdown and JUnit XML (`--report`).
//!
//! Plain aligned text rather than a table crate: the repository prints its
//! other tables the same way and a dependency would buy little. XML is
//! escaped by hand for the same reason: five entities and the control
//! characters XML 1.0 forbids.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::table::{CellRow, JobResult, Table, Verdict, tabulate};
use crate::report::human_ms;

/// Most jobs listed by name under the table when they did not pass.
pub const MAX_LISTED: usize = 20;

/// How the batch run went, beyond its jobs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunInfo {
    /// The plan file.
    pub plan: String,
    /// Wall time of the batch, ms.
    pub elapsed_ms: u64,
    /// A signal (Ctrl-C) stopped it.
    pub interrupted: bool,
    /// `halt` stopped it: why.
    pub halted: Option<String>,
    /// The batch's exit code.
    pub exit_code: u8,
}

/// Everything a report shows.
#[derive(Debug, Clone)]
pub struct Report {
    /// The run.
    pub info: RunInfo,
    /// The matrix axes, in plan order (the table's columns).
    pub axes: Vec<String>,
    /// Every job's result, in plan order.
    pub results: Vec<JobResult>,
    /// The table computed from them.
    pub table: Table,
}

/// A report file's format, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `.md`: Markdown.
    Markdown,
    /// `.xml`: JUnit XML.
    Junit,
    /// `.jsonl` or `.json`: JSON lines.
    JsonLines,
}

impl Format {
    /// The format a report file's name asks for.
    pub fn of(path: &Path) -> Result<Format, String> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("md" | "markdown") => Ok(Format::Markdown),
            Some("xml") => Ok(Format::Junit),
            Some("jsonl" | "json") => Ok(Format::JsonLines),
            _ => Err(format!(
                "--report {}: unknown format; name it FILE.md (Markdown), FILE.xml (JUnit) or FILE.jsonl (JSON lines)",
                path.display()
            )),
        }
    }
}

impl Report {
    /// A report of `results`.
    pub fn new(info: RunInfo, axes: Vec<String>, results: Vec<JobResult>) -> Report {
        let table = tabulate(&results);
        Report {
            info,
            axes,
            results,
            table,
        }
    }

    /// The report in `format`.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Markdown => self.markdown(),
            Format::Junit => self.junit(),
            Format::JsonLines => self.json_lines(),
        }
    }

    /// The table's rows as cells of text: a header, one row per cell, the
    /// summary row last.
    fn grid(&self) -> Vec<Vec<String>> {
        let mut header: Vec<String> = vec!["JOB".into()];
        header.extend(self.axes.iter().map(|a| a.to_uppercase()));
        header.extend(
            [
                "RUNS", "PASS", "FAIL", "PASS@1", "PASS^K", "MEDIAN", "P90", "COST", "CONSIST",
                "HUNG", "TIMEOUT", "LOST", "KILLED", "SKIPPED",
            ]
            .map(String::from),
        );
        let mut rows = vec![header];
        for c in &self.table.cells {
            let mut row = vec![c.job.clone()];
            row.extend(
                self.axes
                    .iter()
                    .map(|a| c.cell.get(a).unwrap_or("").to_owned()),
            );
            row.extend(self.numbers(c));
            rows.push(row);
        }
        let s = &self.table.summary;
        let mut total = vec!["all".to_owned()];
        total.extend(self.axes.iter().map(|_| String::new()));
        total.extend([
            s.counts.runs.to_string(),
            s.counts.passes.to_string(),
            s.counts.fails.to_string(),
            percent(s.pass_at_1),
            percent(s.pass_hat_k),
            duration(s.median_ms),
            duration(s.p90_ms),
            cost(s.cost),
            percent(s.consistency),
            s.counts.hung.to_string(),
            s.counts.timeout.to_string(),
            s.counts.lost.to_string(),
            s.counts.killed.to_string(),
            s.counts.skipped.to_string(),
        ]);
        rows.push(total);
        rows
    }

    fn numbers(&self, c: &CellRow) -> Vec<String> {
        vec![
            c.counts.runs.to_string(),
            c.counts.passes.to_string(),
            c.counts.fails.to_string(),
            percent(c.pass_at_1),
            match c.pass_hat_k {
                Some(true) => "yes".into(),
                Some(false) => "no".into(),
                None => "-".into(),
            },
            duration(c.median_ms),
            duration(c.p90_ms),
            cost(c.cost),
            percent(c.consistency),
            c.counts.hung.to_string(),
            c.counts.timeout.to_string(),
            c.counts.lost.to_string(),
            c.counts.killed.to_string(),
            c.counts.skipped.to_string(),
        ]
    }

    /// The jobs that did not pass, at most [`MAX_LISTED`], and how many more.
    fn not_passed(&self) -> (Vec<&JobResult>, usize) {
        let all: Vec<&JobResult> = self
            .results
            .iter()
            .filter(|r| r.verdict() != Verdict::Pass)
            .collect();
        let more = all.len().saturating_sub(MAX_LISTED);
        (all.into_iter().take(MAX_LISTED).collect(), more)
    }

    /// One sentence: counts, time, exit code.
    pub fn headline(&self) -> String {
        let c = &self.table.summary.counts;
        let mut parts = vec![format!("{} passed", c.passes)];
        for (n, word) in [
            (c.fails, "failed"),
            (c.hung, "hung"),
            (c.timeout, "timed out"),
            (c.lost, "lost"),
            (c.killed, "killed"),
            (c.skipped, "skipped"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {word}"));
            }
        }
        let mut s = format!(
            "{} jobs: {} in {}",
            c.runs,
            parts.join(", "),
            human_ms(self.info.elapsed_ms)
        );
        if self.info.interrupted {
            s.push_str("; interrupted");
        }
        if let Some(why) = &self.info.halted {
            s.push_str(&format!("; halted ({why})"));
        }
        s.push_str(&format!("; exit {}", self.info.exit_code));
        s
    }

    /// The aligned table, the jobs that did not pass, and the headline.
    pub fn terminal(&self) -> String {
        let grid = self.grid();
        let text_columns = 1 + self.axes.len();
        let widths: Vec<usize> = (0..grid[0].len())
            .map(|i| grid.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &grid {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(i, cell)| {
                    if i < text_columns {
                        format!("{cell:<w$}", w = widths[i])
                    } else {
                        format!("{cell:>w$}", w = widths[i])
                    }
                })
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        let (listed, more) = self.not_passed();
        if !listed.is_empty() {
            out.push_str("\nnot passed:\n");
            let w = listed.iter().map(|r| r.name.len()).max().unwrap_or(0);
            for r in listed {
                let _ = writeln!(out, "  {:<w$}  {}", r.name, why(r));
            }
            if more > 0 {
                let _ = writeln!(out, "  … and {more} more (see --json)");
            }
        }
        out.push('\n');
        out.push_str(&self.headline());
        out.push('\n');
        out
    }

    /// One JSON object per job, then one summary with the cells.
    pub fn json_lines(&self) -> String {
        #[derive(Serialize)]
        struct JobLine<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            verdict: Verdict,
            #[serde(flatten)]
            result: &'a JobResult,
        }
        #[derive(Serialize)]
        struct SummaryLine<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            #[serde(flatten)]
            info: &'a RunInfo,
            #[serde(flatten)]
            summary: &'a super::table::Summary,
            rows: &'a [CellRow],
        }
        let mut out = String::new();
        for r in &self.results {
            let line = JobLine {
                kind: "job",
                verdict: r.verdict(),
                result: r,
            };
            out.push_str(&serde_json::to_string(&line).expect("serializes"));
            out.push('\n');
        }
        let summary = SummaryLine {
            kind: "summary",
            info: &self.info,
            summary: &self.table.summary,
            rows: &self.table.cells,
        };
        out.push_str(&serde_json::to_string(&summary).expect("serializes"));
        out.push('\n');
        out
    }

    /// A Markdown document: heading, table (summary row in bold), the jobs
    /// that did not pass, the headline.
    pub fn markdown(&self) -> String {
        let grid = self.grid();
        let mut out = format!("# Batch results: {}\n\n", md(&self.info.plan));
        for (i, row) in grid.iter().enumerate() {
            let last = i == grid.len() - 1;
            let cells: Vec<String> = row
                .iter()
                .map(|c| match (i, last) {
                    (0, _) => md(&c.to_lowercase()),
                    (_, true) if !c.is_empty() => format!("**{}**", md(c)),
                    _ => md(c),
                })
                .collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
            if i == 0 {
                let text_columns = 1 + self.axes.len();
                let align: Vec<&str> = (0..row.len())
                    .map(|c| if c < text_columns { "---" } else { "---:" })
                    .collect();
                let _ = writeln!(out, "|{}|", align.join("|"));
            }
        }
        let (listed, more) = self.not_passed();
        if !listed.is_empty() {
            out.push_str("\n## Not passed\n\n");
            for r in listed {
                let _ = writeln!(out, "- `{}`: {}", r.name.replace('`', "'"), md(&why(r)));
            }
            if more > 0 {
                let _ = writeln!(out, "- … and {more} more");
            }
        }
        let _ = writeln!(out, "\n{}", md(&self.headline()));
        out
    }

    /// JUnit XML: a test suite per job key, a test case per job; `failure`
    /// for a failed job or judge, `error` for hung, timeout, lost and killed
    /// (the machinery, not the work), `skipped` for a job never started.
    pub fn junit(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let s = &self.table.summary.counts;
        let errors = |c: &super::table::Counts| c.hung + c.timeout + c.lost + c.killed;
        let _ = writeln!(
            out,
            "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\">",
            xml(&self.info.plan),
            s.runs,
            s.fails,
            errors(s),
            s.skipped,
            seconds(self.info.elapsed_ms)
        );
        let mut keys: Vec<&str> = Vec::new();
        for r in &self.results {
            if !keys.contains(&r.key.as_str()) {
                keys.push(&r.key);
            }
        }
        for key in keys {
            let members: Vec<&JobResult> = self.results.iter().filter(|r| r.key == key).collect();
            let mut c = super::table::Counts::default();
            let mut time = 0;
            for r in &members {
                match r.verdict() {
                    Verdict::Pass => c.passes += 1,
                    Verdict::Fail => c.fails += 1,
                    Verdict::Skipped => c.skipped += 1,
                    _ => c.hung += 1,
                }
                time += r.duration_ms.unwrap_or(0);
            }
            let _ = writeln!(
                out,
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\">",
                xml(key),
                members.len(),
                c.fails,
                c.hung,
                c.skipped,
                seconds(time)
            );
            for r in members {
                self.testcase(&mut out, r);
            }
            out.push_str("  </testsuite>\n");
        }
        out.push_str("</testsuites>\n");
        out
    }

    fn testcase(&self, out: &mut String, r: &JobResult) {
        let classname = std::iter::once(r.key.clone())
            .chain(r.cell.0.iter().map(|(a, v)| format!("{a}={v}")))
            .collect::<Vec<_>>()
            .join(".");
        let _ = write!(
            out,
            "    <testcase name=\"{}\" classname=\"{}\" time=\"{}\"",
            xml(&r.name),
            xml(&classname),
            seconds(r.duration_ms.unwrap_or(0))
        );
        let verdict = r.verdict();
        let message = why(r);
        let element = match verdict {
            Verdict::Pass => None,
            Verdict::Fail => Some("failure"),
            Verdict::Skipped => Some("skipped"),
            _ => Some("error"),
        };
        out.push_str(">\n");
        if let Some(el) = element {
            let _ = writeln!(
                out,
                "      <{el} message=\"{}\" type=\"{}\"/>",
                xml(&message),
                verdict.as_str()
            );
        }
        let mut details = vec![format!("outcome: {}", r.outcome.as_str())];
        if let Some(j) = &r.judge {
            details.push(format!("judge: {}", j.outcome));
        }
        if let Some(c) = r.cost {
            details.push(format!("cost: {}", cost(Some(c))));
        }
        details.push(format!("attempts: {}", r.attempts));
        if let Some(log) = &r.log {
            details.push(format!("log: {log}"));
        }
        if let Some(wt) = &r.worktree {
            details.push(format!("worktree: {wt}"));
        }
        let _ = writeln!(
            out,
            "      <system-out>{}</system-out>",
            xml(&details.join("\n"))
        );
        out.push_str("    </testcase>\n");
    }
}

/// Why a job did not pass, in a few words.
fn why(r: &JobResult) -> String {
    let verdict = r.verdict();
    let mut s = match (verdict, &r.judge) {
        (Verdict::Fail, Some(j)) if r.outcome == super::table::JobOutcome::Success => {
            format!(
                "fail: the judge said no (exit {})",
                j.exit_code.map_or("?".into(), |c| c.to_string())
            )
        }
        (v, Some(j)) if r.outcome == super::table::JobOutcome::Success => {
            format!("{}: the judge {}", v.as_str(), j.outcome)
        }
        (Verdict::Fail, _) => match r.exit_code {
            Some(c) => format!("fail: exit {c}"),
            None => "fail".into(),
        },
        (v, _) => v.as_str().to_owned(),
    };
    if let Some(reason) = &r.reason {
        s.push_str(&format!(" ({reason})"));
    }
    if let Some(log) = &r.log {
        s.push_str(&format!("; log: {log}"));
    }
    if let Some(wt) = &r.worktree {
        s.push_str(&format!("; worktree kept: {wt}"));
    }
    s
}

fn percent(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{:.0}%", v * 100.0))
}

fn duration(ms: Option<u64>) -> String {
    ms.map_or("-".into(), human_ms)
}

/// A cost with at most four decimals, trailing zeros dropped.
pub fn cost(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(v) => {
            let s = format!("{v:.4}");
            let s = s.trim_end_matches('0').trim_end_matches('.');
            if s == "-0" { "0".into() } else { s.to_owned() }
        }
    }
}

fn seconds(ms: u64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

/// Text safe inside a Markdown table cell.
fn md(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Text safe in XML 1.0 content and attribute values: the five entities,
/// and characters XML 1.0 cannot carry replaced by U+FFFD. Line breaks and
/// tabs are written as character references so attributes keep them.
pub fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::table::tests::fixture;
    use super::*;

    fn report() -> Report {
        Report::new(
            RunInfo {
                plan: "plan.yaml".into(),
                elapsed_ms: 4200,
                interrupted: false,
                halted: None,
                exit_code: 1,
            },
            vec!["agent".into(), "task".into()],
            fixture(),
        )
    }

    #[test]
    fn the_terminal_table_aligns_every_column_and_lists_what_did_not_pass() {
        let text = report().terminal();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("JOB    AGENT  TASK  RUNS  PASS  FAIL  PASS@1  PASS^K"),
            "{text}"
        );
        assert!(
            lines[0].ends_with("CONSIST  HUNG  TIMEOUT  LOST  KILLED  SKIPPED"),
            "{text}"
        );
        let row = |label: &str| -> Vec<&str> {
            lines
                .iter()
                .find(|l| l.starts_with(label))
                .unwrap_or_else(|| panic!("no row {label}\n{text}"))
                .split_whitespace()
                .collect()
        };
        assert_eq!(
            row("solve  alpha  t2"),
            [
                "solve", "alpha", "t2", "3", "1", "1", "50%", "no", "500ms", "600ms", "1", "50%",
                "1", "0", "0", "0", "0"
            ]
        );
        assert_eq!(
            row("all"),
            [
                "all", "10", "5", "2", "71%", "50%", "400ms", "800ms", "1.3", "86%", "1", "1", "0",
                "0", "1"
            ]
        );
        assert_eq!(
            row("setup"),
            [
                "setup", "1", "1", "0", "100%", "yes", "50ms", "50ms", "-", "100%", "0", "0", "0",
                "0", "0"
            ]
        );
        // Right-aligned numbers: every row is as long as the header.
        let header_len = lines[0].len();
        assert!(lines[1..6].iter().all(|l| l.len() == header_len), "{text}");
        assert!(
            text.contains("not passed:\n  a2-2  fail: the judge said no (exit 1)\n"),
            "{text}"
        );
        assert!(text.contains("  b1-3  skipped\n"), "{text}");
        assert!(
            text.trim_end().ends_with(
                "10 jobs: 5 passed, 2 failed, 1 hung, 1 timed out, 1 skipped in 4.2s; exit 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn json_lines_have_one_line_per_job_and_a_summary_with_the_cells() {
        let text = report().json_lines();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 11);
        let a22 = &lines[5];
        assert_eq!(a22["type"], "job");
        assert_eq!(a22["name"], "a2-2");
        assert_eq!(a22["verdict"], "fail");
        assert_eq!(a22["outcome"], "success");
        assert_eq!(a22["judge"]["outcome"], "failed");
        assert_eq!(
            a22["cell"],
            serde_json::json!({"agent": "alpha", "task": "t2"})
        );
        assert_eq!(a22["cost"], 0.5);
        assert_eq!(a22["repeat"], 2);
        let s = &lines[10];
        assert_eq!(s["type"], "summary");
        assert_eq!(s["plan"], "plan.yaml");
        assert_eq!(s["exit_code"], 1);
        assert_eq!(s["runs"], 10);
        assert_eq!(s["passes"], 5);
        assert_eq!(s["hung"], 1);
        assert_eq!(s["pass_hat_k"], 0.5);
        assert_eq!(s["rows"].as_array().unwrap().len(), 4);
        assert_eq!(s["rows"][2]["pass_at_1"], 0.5);
        assert_eq!(s["rows"][2]["pass_hat_k"], false);
        assert_eq!(s["rows"][2]["median_ms"], 500);
    }

    #[test]
    fn markdown_is_a_table_with_a_bold_summary_row() {
        let text = report().markdown();
        assert!(
            text.starts_with("# Batch results: plan.yaml\n\n| job | agent | task | runs |"),
            "{text}"
        );
        assert!(text.contains("|---|---|---|---:|"), "{text}");
        assert!(text.contains("| solve | alpha | t2 | 3 | 1 | 1 | 50% | no | 500ms | 600ms | 1 | 50% | 1 | 0 | 0 | 0 | 0 |"), "{text}");
        assert!(
            text.contains("| **all** |  |  | **10** | **5** |"),
            "{text}"
        );
        assert!(
            text.contains("## Not passed\n\n- `a2-2`: fail: the judge said no (exit 1)"),
            "{text}"
        );
        let mut r = report();
        r.results[7].reason = Some("a | b".into());
        assert!(r.markdown().contains("a \\| b"));
    }

    #[test]
    fn junit_separates_failures_errors_and_skips_and_escapes_everything() {
        let mut r = report();
        r.results[7].reason = Some("exit <1> & \"quoted\" 'x'\u{7}".into());
        r.results[7].name = "b1-1".into();
        let text = r.junit();
        assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"plan.yaml\" tests=\"10\" failures=\"2\" errors=\"2\" skipped=\"1\" time=\"4.200\">"), "{text}");
        assert!(
            text.contains(
                "<testsuite name=\"solve\" tests=\"9\" failures=\"2\" errors=\"2\" skipped=\"1\""
            ),
            "{text}"
        );
        assert!(text.contains("<testcase name=\"a2-3\" classname=\"solve.agent=alpha.task=t2\" time=\"0.600\">\n      <error message=\"hung\" type=\"hung\"/>"), "{text}");
        assert!(
            text.contains("<failure message=\"fail: the judge said no (exit 1)\" type=\"fail\"/>"),
            "{text}"
        );
        assert!(
            text.contains("<skipped message=\"skipped\" type=\"skipped\"/>"),
            "{text}"
        );
        assert!(
            text.contains("message=\"fail: exit 1 (exit &lt;1&gt; &amp; &quot;quoted&quot; &apos;x&apos;\u{FFFD})\""),
            "{text}"
        );
        well_formed(&text);
    }

    #[test]
    fn xml_escapes_entities_and_replaces_forbidden_characters() {
        assert_eq!(xml("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
        assert_eq!(xml("x\u{0}y\u{1b}z\n\t"), "x\u{FFFD}y\u{FFFD}z&#10;&#9;");
        assert_eq!(xml("é✓"), "é✓");
    }

    #[test]
    fn report_formats_come_from_the_extension() {
        assert_eq!(Format::of(Path::new("r.md")), Ok(Format::Markdown));
        assert_eq!(Format::of(Path::new("out/r.xml")), Ok(Format::Junit));
        assert_eq!(Format::of(Path::new("r.jsonl")), Ok(Format::JsonLines));
        let e = Format::of(Path::new("r.txt")).unwrap_err();
        assert!(e.contains("FILE.md") && e.contains("FILE.xml"), "{e}");
    }

    #[test]
    fn costs_show_at_most_four_decimals() {
        assert_eq!(cost(Some(1.3)), "1.3");
        assert_eq!(cost(Some(0.000_04)), "0");
        assert_eq!(cost(Some(2.0)), "2");
        assert_eq!(cost(Some(0.123_456)), "0.1235");
        assert_eq!(cost(None), "-");
    }

    /// A small well-formedness check: tags nest and close, attributes are
    /// quoted, every `&` starts a known entity or a character reference,
    /// and no raw `<` appears in text.
    fn well_formed(doc: &str) {
        let body = doc.split_once("?>\n").expect("an XML declaration").1;
        let mut stack: Vec<String> = Vec::new();
        let mut rest = body;
        while let Some(i) = rest.find('<') {
            check_text(&rest[..i]);
            let end = rest[i..].find('>').expect("a closed tag") + i;
            let tag = &rest[i + 1..end];
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop().as_deref(), Some(name), "mismatched </{name}>");
            } else {
                let self_closing = tag.ends_with('/');
                let tag = tag.trim_end_matches('/');
                let name = tag.split_whitespace().next().unwrap().to_owned();
                let attrs = &tag[name.len()..];
                assert_eq!(
                    attrs.matches('"').count() % 2,
                    0,
                    "unbalanced quotes in <{tag}>"
                );
                for value in attrs.split('"').skip(1).step_by(2) {
                    assert!(!value.contains('<'), "raw < in attribute {value:?}");
                    check_text(value);
                }
                if !self_closing {
                    stack.push(name);
                }
            }
            rest = &rest[end + 1..];
        }
        check_text(rest);
        assert!(stack.is_empty(), "unclosed {stack:?}");
    }

    fn check_text(s: &str) {
        for (i, _) in s.match_indices('&') {
            let entity = &s[i..s[i..].find(';').map_or(s.len(), |e| i + e + 1)];
            let known = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"].contains(&entity)
                || (entity.starts_with("&#") && entity[2..entity.len() - 1].parse::<u32>().is_ok());
            assert!(known, "bad entity {entity:?}");
        }
        assert!(
            !s.chars()
                .any(|c| (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r'))
        );
    }
}
