//! What a person sees on a terminal: short lines for reports, and any text
//! from a job (a log line, a reason) made unable to drive the terminal.

use jobwatch_core::model::Outcome;
use jobwatch_core::report::{JobReport, MatchReport, human_ms};

/// A short line for a person, then the tail indented; made safe for a
/// terminal ([`for_terminal`]): a log line or a reason cannot drive it.
pub fn job_report(r: &JobReport) -> String {
    let mut s = format!("{}: {}", r.name, r.outcome);
    if r.running {
        s.push_str(" (still running)");
    }
    match (r.exit_code, r.signal) {
        (Some(c), _) if r.outcome != Outcome::Success => s.push_str(&format!(", exit {c}")),
        (_, Some(sig)) => s.push_str(&format!(", signal {sig}")),
        _ => {}
    }
    if let Some(ms) = r.duration_ms {
        s.push_str(&format!(" in {}", human_ms(ms)));
    }
    if let Some(reason) = &r.reason {
        s.push_str(&format!(" ({})", for_terminal(reason)));
    }
    if r.outcome != Outcome::Success {
        s.push_str(&format!("\n  log: {}", for_terminal(&r.log)));
    }
    if let Some(result) = &r.result {
        s.push_str(&format!("\n  result: {}", for_terminal(result)));
    }
    for line in r.tail.iter().flatten() {
        s.push_str(&format!("\n  | {}", for_terminal(line)));
    }
    s
}

/// A short line for a person, then the matching line indented (made
/// safe for a terminal).
pub fn match_report(r: &MatchReport) -> String {
    let state = if r.running {
        "still running"
    } else {
        "the run has ended"
    };
    format!(
        "{}: matched ({state})\n  | {}",
        r.name,
        for_terminal(&r.line)
    )
}

/// `s` made safe to show on a terminal: escape sequences (colours, cursor
/// moves, window titles: CSI, OSC, DCS) removed, and every other control
/// character (C0, DEL, C1 such as the one-character CSI U+009B) dropped,
/// except tabs. A job's log must not be able to drive the user's terminal;
/// JSON output keeps the text, escaped.
pub fn for_terminal(s: &str) -> String {
    console::strip_ansi_codes(s)
        .chars()
        .filter(|c| !c.is_control() || *c == '\t')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_for_a_terminal_has_no_escape_sequences_or_control_characters() {
        let hostile = "\x1b]0;title\x07\x1b[31mred\x1b[0m\ttab\x07 \u{9b}2J \x1bPdcs\x1b\\end\x08";
        assert_eq!(for_terminal(hostile), "red\ttab  end");
        assert_eq!(for_terminal("plain é"), "plain é");
    }
}
