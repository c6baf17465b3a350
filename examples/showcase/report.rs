//! Figures, goals, and the two ways to print them: one table for a person, JSON lines
//! for a program.
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::variants::Variant;

/// The unit of a figure, as printed in the table and the JSON lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Milliseconds of virtual time.
    Ms,
    /// Frames per second of virtual time.
    FramesPerS,
    /// Nanoseconds of host CPU time.
    Ns,
    /// 1 (yes) or 0 (no).
    Bool,
    /// A fraction, 0 to 1.
    Ratio,
    /// A count of connections, streams or cancels.
    Count,
    /// A count of log lines.
    Lines,
    /// A count of runs of a repeated scenario.
    Runs,
    /// A count of Server-Sent Events received.
    Events,
    /// Bytes of RAM.
    Bytes,
}

impl Unit {
    /// The unit's id.
    pub const fn as_str(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::FramesPerS => "frames/s",
            Unit::Ns => "ns",
            Unit::Bool => "bool",
            Unit::Ratio => "ratio",
            Unit::Count => "count",
            Unit::Lines => "lines",
            Unit::Runs => "runs",
            Unit::Events => "events",
            Unit::Bytes => "bytes",
        }
    }

    /// The value as the table shows it.
    fn format(self, value: f64) -> String {
        match self {
            Unit::Ms => format!("{value:.2}"),
            Unit::FramesPerS => format!("{value:.2}"),
            Unit::Ratio => format!("{value:.2}"),
            Unit::Ns => format!("{value:.0}"),
            Unit::Bool | Unit::Count | Unit::Lines | Unit::Runs | Unit::Events | Unit::Bytes => {
                format!("{value:.0}")
            }
        }
    }
}

/// What a layered variant must reach.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Goal {
    /// The value is at most this.
    AtMost(f64),
    /// The value is at least this.
    AtLeast(f64),
    /// The value is exactly this.
    Equals(f64),
    /// The value is at most this many times the same figure of the unlayered variant.
    TimesUnlayered(f64),
}

/// One measured figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// The scenario's id.
    pub scenario: &'static str,
    /// The server it was measured on.
    pub variant: Variant,
    /// The metric's id.
    pub metric: &'static str,
    /// The value; `None` when there is nothing to measure (a failed load, a slot still
    /// held at the end of the scenario).
    pub value: Option<f64>,
    /// The unit.
    pub unit: Unit,
    /// What `None` means, for the table (e.g. "held > 120 s").
    pub none_means: &'static str,
    /// The goal a layered variant must reach, if the scenario has one.
    pub goal: Option<Goal>,
}

impl Figure {
    /// A figure without a goal; `None` shows as "none".
    pub fn new(
        scenario: &'static str,
        variant: Variant,
        metric: &'static str,
        value: Option<f64>,
        unit: Unit,
    ) -> Self {
        Self {
            scenario,
            variant,
            metric,
            value,
            unit,
            none_means: "none",
            goal: None,
        }
    }

    /// The same figure; `None` shows as `text`.
    pub fn none_means(mut self, text: &'static str) -> Self {
        self.none_means = text;
        self
    }

    /// The same figure with `goal`, which applies to layered variants only.
    pub fn goal(mut self, goal: Goal) -> Self {
        if self.variant.is_layered() {
            self.goal = Some(goal);
        }
        self
    }

    /// The figure as one JSON object on one line. A number that is not finite is null.
    pub fn json(&self) -> String {
        let value = match self.value {
            Some(v) if v.is_finite() => format!("{v}"),
            _ => "null".to_string(),
        };
        format!(
            "{{\"scenario\":\"{}\",\"variant\":\"{}\",\"metric\":\"{}\",\"value\":{},\"unit\":\"{}\"}}",
            self.scenario,
            self.variant.id(),
            self.metric,
            value,
            self.unit.as_str()
        )
    }
}

/// Whether `figure` meets its goal; `None` when it has none. `all` holds the figures of
/// the run, for goals relative to the unlayered variant.
pub fn meets(figure: &Figure, all: &[Figure]) -> Option<bool> {
    let goal = figure.goal?;
    let Some(value) = figure.value else {
        return Some(false);
    };
    Some(match goal {
        Goal::AtMost(limit) => value <= limit,
        Goal::AtLeast(limit) => value >= limit,
        Goal::Equals(target) => (value - target).abs() < 1e-9,
        Goal::TimesUnlayered(factor) => {
            let plain = all.iter().find(|f| {
                f.scenario == figure.scenario
                    && f.metric == figure.metric
                    && f.variant == figure.variant.unlayered()
            });
            match plain.and_then(|f| f.value) {
                Some(plain) => value <= plain * factor,
                None => false,
            }
        }
    })
}

/// The goal as the table states it.
fn goal_text(goal: Goal, unit: Unit) -> String {
    match goal {
        Goal::AtMost(v) => format!("≤ {}", unit.format(v)),
        Goal::AtLeast(v) => format!("≥ {}", unit.format(v)),
        Goal::Equals(v) => format!("= {}", unit.format(v)),
        Goal::TimesUnlayered(f) => format!("≤ {f} × unlayered"),
    }
}

/// The table: one row per scenario and metric, one column per variant, then the goal
/// and whether each layered variant meets it.
pub fn table(figures: &[Figure], variants: &[Variant]) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["scenario".to_string(), "metric".to_string()];
    header.extend(variants.iter().map(|v| v.id().to_string()));
    header.push("goal (layered)".to_string());
    let layered: Vec<Variant> = variants
        .iter()
        .copied()
        .filter(|v| v.is_layered())
        .collect();
    header.push(format!(
        "meets ({})",
        layered
            .iter()
            .map(|v| v.id())
            .collect::<Vec<_>>()
            .join(" / ")
    ));
    rows.push(header);

    let mut keys: Vec<(&'static str, &'static str)> = Vec::new();
    for f in figures {
        if !keys.contains(&(f.scenario, f.metric)) {
            keys.push((f.scenario, f.metric));
        }
    }
    for (scenario, metric) in keys {
        let of = |v: Variant| {
            figures
                .iter()
                .find(|f| f.scenario == scenario && f.metric == metric && f.variant == v)
        };
        let unit = figures
            .iter()
            .find(|f| f.scenario == scenario && f.metric == metric)
            .map(|f| f.unit)
            .expect("the key came from a figure");
        let mut row = vec![
            scenario.to_string(),
            format!("{metric} ({})", unit.as_str()),
        ];
        for &v in variants {
            row.push(match of(v) {
                None => "n/a".to_string(),
                Some(f) => match f.value {
                    Some(value) => unit.format(value),
                    None => f.none_means.to_string(),
                },
            });
        }
        // Goals may differ per variant (nagle's ideal depends on the bytes each server
        // sends); the column shows the first, the check uses each figure's own.
        let goal = layered.iter().find_map(|&v| of(v).and_then(|f| f.goal));
        row.push(goal.map(|g| goal_text(g, unit)).unwrap_or_default());
        let verdicts: Vec<&str> = layered
            .iter()
            .map(|&v| match of(v).map(|f| meets(f, figures)) {
                None => "n/a",
                Some(None) => "",
                Some(Some(true)) => "yes",
                Some(Some(false)) => "NO",
            })
            .collect();
        row.push(if verdicts.iter().all(|v| v.is_empty()) {
            String::new()
        } else {
            verdicts.join(" / ")
        });
        rows.push(row);
    }
    render(&rows)
}

/// Renders rows as a Markdown table whose columns line up in a terminal too.
fn render(rows: &[Vec<String>]) -> String {
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (i, row) in rows.iter().enumerate() {
        out.push('|');
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            // Names left, figures right.
            if c < 2 {
                let _ = write!(out, " {cell}{} |", " ".repeat(pad));
            } else {
                let _ = write!(out, " {}{cell} |", " ".repeat(pad));
            }
        }
        out.push('\n');
        if i == 0 {
            out.push('|');
            for (c, w) in widths.iter().enumerate() {
                let dashes = "-".repeat(*w);
                if c < 2 {
                    let _ = write!(out, " {dashes} |");
                } else {
                    let _ = write!(out, "{dashes}-:|");
                }
            }
            out.push('\n');
        }
    }
    out
}

static PROGRESS: AtomicBool = AtomicBool::new(false);

/// Turns the progress line on stderr on or off.
pub fn set_progress(on: bool) {
    PROGRESS.store(on, Ordering::Relaxed);
}

/// Shows what runs now, on one line of stderr (overwritten in a terminal).
pub fn progress(text: &str) {
    if !PROGRESS.load(Ordering::Relaxed) {
        return;
    }
    let mut err = std::io::stderr().lock();
    if err.is_terminal() {
        let _ = write!(err, "\r\x1b[2K{text}");
    } else {
        let _ = writeln!(err, "{text}");
    }
    let _ = err.flush();
}

/// Clears the progress line.
pub fn progress_done() {
    if !PROGRESS.load(Ordering::Relaxed) {
        return;
    }
    let mut err = std::io::stderr().lock();
    if err.is_terminal() {
        let _ = write!(err, "\r\x1b[2K");
        let _ = err.flush();
    }
}
