//! What `ras sweep` prints while it coordinates. On a terminal: the status table, redrawn
//! in place as runs change. Elsewhere (a log file, a pipe, CI): one line per run whose
//! state changed, and a one-line summary at most every `summary_every`, so that a log
//! of a long sweep stays readable. Either way the last table printed is the final one,
//! drawn from the views `coordinate` returns (the cost of an attempt is recorded as its
//! process ends, after the run already showed as complete).

use super::status::{render_views, RunPhase, RunView};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a line says changed: a run's state and attempt (epochs are progress, not changes).
type Shown = (RunPhase, usize, bool);

pub struct SweepProgress {
    terminal: bool,
    summary_every: Duration,
    /// Lines of the table last drawn (terminal), to move back over.
    drawn_lines: usize,
    /// Per run id: what the last line said.
    last: BTreeMap<String, Shown>,
    last_summary: Option<Instant>,
}

impl SweepProgress {
    /// `terminal`: stdout is a terminal (redraw in place).
    pub fn new(terminal: bool) -> Self {
        Self {
            terminal,
            summary_every: Duration::from_secs(180),
            drawn_lines: 0,
            last: BTreeMap::new(),
            last_summary: None,
        }
    }

    pub fn with_summary_every(mut self, every: Duration) -> Self {
        self.summary_every = every;
        self
    }

    /// The text to print for this update of the views.
    pub fn update(&mut self, views: &[RunView]) -> String {
        if self.terminal {
            return self.redraw(views);
        }
        let mut out = String::new();
        for v in views {
            let now = shown(v);
            let before = self.last.insert(v.id.clone(), now.clone());
            if before.as_ref() != Some(&now) {
                out += &change_line(v, before.as_ref());
            }
        }
        if self.last_summary.is_none_or(|t| t.elapsed() >= self.summary_every) {
            self.last_summary = Some(Instant::now());
            out += &summary_line(views);
        }
        out
    }

    /// The final table (on a terminal, in place of the live one).
    pub fn finish(&mut self, views: &[RunView]) -> String {
        if self.terminal {
            self.redraw(views)
        } else {
            render_views(views)
        }
    }

    fn redraw(&mut self, views: &[RunView]) -> String {
        let table = render_views(views);
        // Up over the previous table, clear from there to the end of the screen.
        let back = if self.drawn_lines > 0 { format!("\x1b[{}F\x1b[J", self.drawn_lines) } else { String::new() };
        self.drawn_lines = table.lines().count();
        back + &table
    }
}

fn shown(v: &RunView) -> Shown {
    (v.phase.clone(), v.attempts, v.unknown.is_some())
}

fn phase_name(v: &RunView) -> String {
    if v.unknown.is_some() {
        "unknown".into()
    } else {
        format!("{:?}", v.phase).to_lowercase()
    }
}

/// `hh:mm:ss run ID (label): pending -> active, attempt 1, job 1234`.
fn change_line(v: &RunView, before: Option<&Shown>) -> String {
    let was = match before {
        Some((_, _, true)) => "unknown -> ".to_string(),
        Some((phase, _, false)) => format!("{} -> ", format!("{phase:?}").to_lowercase()),
        None => String::new(),
    };
    let mut detail = vec![];
    if v.attempts > 0 {
        detail.push(format!("attempt {}", v.attempts));
    }
    if let (RunPhase::Active, Some(job)) = (&v.phase, &v.job) {
        detail.push(format!("job {}", job.id));
    }
    if v.phase == RunPhase::Complete {
        if let Some(i) = v.mean_iauroc {
            detail.push(format!("I-AUROC {:.1}", 100.0 * i));
        }
    }
    if matches!(v.phase, RunPhase::Retry | RunPhase::Failed | RunPhase::Cancelled) {
        if let Some(e) = &v.error {
            detail.push(e.lines().next().unwrap_or_default().to_string());
        }
    }
    if let Some(why) = &v.unknown {
        detail.push(why.clone());
    }
    let detail = if detail.is_empty() { String::new() } else { format!(", {}", detail.join(", ")) };
    format!("{} run {} ({}): {was}{}{detail}\n", clock(), v.id, v.label, phase_name(v))
}

/// `hh:mm:ss 4 runs: 1 complete, 2 active (epochs 40/60, 12/60), 1 pending, ...`.
fn summary_line(views: &[RunView]) -> String {
    let epochs: Vec<String> =
        views.iter().filter(|v| v.phase == RunPhase::Active).map(|v| format!("{}/{}", v.epoch, v.epochs)).collect();
    let epochs = if epochs.is_empty() { String::new() } else { format!(" (epochs {})", epochs.join(", ")) };
    format!("{} {}\n", clock(), super::status::phase_counts(views, &epochs))
}

/// UTC time of day, for log lines.
fn clock() -> String {
    let s = crate::unix_now() % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: &str, phase: RunPhase, attempts: usize, epoch: usize) -> RunView {
        RunView {
            id: id.into(),
            label: format!("label-{id}"),
            phase,
            attempts,
            promotions: 0,
            epoch,
            epochs: 10,
            ranks: 1,
            job: None,
            error: None,
            mean_iauroc: None,
            mean_pauroc: None,
            eta_s: None,
            unknown: None,
            cost: None,
            job_ended: false,
            free_retry: false,
        }
    }

    #[test]
    fn off_a_terminal_one_line_per_state_change_and_a_rare_summary() {
        let mut p = SweepProgress::new(false);
        let first = p.update(&[view("a", RunPhase::Pending, 0, 0), view("b", RunPhase::Pending, 0, 0)]);
        assert_eq!(first.lines().count(), 3, "two runs first seen, one summary:\n{first}");
        assert!(first.contains("run a (label-a): pending\n") && first.contains("2 runs: 0 complete"), "{first}");
        // Epoch progress alone prints nothing (the summary is not due yet).
        let quiet = p.update(&[view("a", RunPhase::Active, 1, 3), view("b", RunPhase::Pending, 0, 0)]);
        assert_eq!(quiet.lines().count(), 1, "{quiet}");
        assert!(quiet.contains("run a (label-a): pending -> active, attempt 1\n"), "{quiet}");
        assert_eq!(p.update(&[view("a", RunPhase::Active, 1, 7), view("b", RunPhase::Pending, 0, 0)]), "");
        // The table is printed once, at the end.
        let last = p.finish(&[view("a", RunPhase::Complete, 1, 10), view("b", RunPhase::Complete, 1, 10)]);
        assert_eq!(last, render_views(&[view("a", RunPhase::Complete, 1, 10), view("b", RunPhase::Complete, 1, 10)]));
    }

    #[test]
    fn summaries_come_again_once_due() {
        let mut p = SweepProgress::new(false).with_summary_every(Duration::ZERO);
        p.update(&[view("a", RunPhase::Active, 1, 1)]);
        let again = p.update(&[view("a", RunPhase::Active, 1, 2)]);
        assert!(again.contains("1 runs: 0 complete, 1 active (epochs 2/10)"), "{again}");
    }

    #[test]
    fn on_a_terminal_the_table_is_redrawn_over_the_last() {
        let mut p = SweepProgress::new(true);
        let views = [view("a", RunPhase::Active, 1, 1), view("b", RunPhase::Pending, 0, 0)];
        let first = p.update(&views);
        assert!(!first.contains('\x1b'), "nothing to move over yet");
        let n = first.lines().count();
        let second = p.update(&views);
        assert!(second.starts_with(&format!("\x1b[{n}F\x1b[J")), "{second:?}");
        assert_eq!(&second[format!("\x1b[{n}F\x1b[J").len()..], first);
    }
}
