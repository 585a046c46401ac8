//! Percentiles and the printed table.

use std::time::Duration;

/// One row of the result table.
pub struct Row {
    /// Which comparison (e.g. "detection latency").
    pub section: &'static str,
    /// What was measured.
    pub label: String,
    /// The figures, or why there are none.
    pub value: Value,
    /// Label of the row this one's ratio is computed against (same section).
    pub baseline: Option<String>,
}

/// A row's figures.
pub enum Value {
    /// Timed samples.
    Times(Vec<Duration>),
    /// One quantity with its unit (e.g. RSS in MB).
    Amount { value: f64, unit: &'static str },
    /// No figure: the reason (e.g. "never (heartbeat loop keeps it alive)").
    Note(String),
}

/// The sample at fraction `p` of the sorted samples (nearest rank).
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[idx.clamp(1, sorted.len()) - 1]
}

fn median(samples: &[Duration]) -> Option<Duration> {
    let mut s = samples.to_vec();
    s.sort();
    (!s.is_empty()).then(|| percentile(&s, 0.5))
}

fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1000.0;
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// The value's central figure, for ratios.
fn central(v: &Value) -> Option<f64> {
    match v {
        Value::Times(s) => median(s).map(|d| d.as_secs_f64()),
        Value::Amount { value, .. } => Some(*value),
        Value::Note(_) => None,
    }
}

/// Prints the Markdown table's header, so a run's output pastes into the
/// docs.
pub fn print_header() {
    println!("| section | measure | n | p50 (ms) | p99 (ms) | max (ms) | other | ratio |");
    println!("|---|---|---:|---:|---:|---:|---|---:|");
}

/// Prints one section's rows under [`print_header`] (ratios are taken
/// against rows of the same section, all in `rows`), and flushes them, so a
/// later section that fails or is interrupted loses nothing printed.
pub fn print_rows(rows: &[Row]) {
    use std::io::Write;
    for row in rows {
        let ratio = row
            .baseline
            .as_ref()
            .and_then(|b| {
                rows.iter()
                    .find(|r| r.section == row.section && &r.label == b)
            })
            .and_then(|b| Some((central(&row.value)?, central(&b.value)?)))
            .filter(|(_, base)| *base > 0.0)
            .map(|(v, base)| match v / base {
                // A figure cut to a small fraction would print as 0.0×.
                r if r < 0.1 => format!("{r:.3}×"),
                r => format!("{r:.1}×"),
            })
            .unwrap_or_default();
        let cells = match &row.value {
            Value::Times(samples) if samples.is_empty() => [
                "0".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                String::new(),
            ],
            Value::Times(samples) => {
                let mut s = samples.clone();
                s.sort();
                [
                    s.len().to_string(),
                    ms(percentile(&s, 0.5)),
                    ms(percentile(&s, 0.99)),
                    ms(s[s.len() - 1]),
                    String::new(),
                ]
            }
            Value::Amount { value, unit } => [
                "1".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("{value:.2} {unit}"),
            ],
            Value::Note(note) => ["-".into(), "-".into(), "-".into(), "-".into(), note.clone()],
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            row.section, row.label, cells[0], cells[1], cells[2], cells[3], cells[4], ratio
        );
    }
    let _ = std::io::stdout().flush();
}
