//! The reporter: draws the engine's [`Event`]s. A progress bar (indicatif) on a terminal, plain
//! lines on stderr otherwise (cron logs), nothing in JSON mode (stdout is a document then, and
//! stderr stays for errors). Nothing here ever holds a secret: events carry addresses and
//! counts only.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::{Event, Events};
use crate::plan::render::Format;

/// How events are drawn.
#[derive(Clone)]
pub struct Reporter(Option<Arc<Mutex<Draw>>>);

enum Draw {
    /// On a terminal: the bar of the phase under way (reading, applying), if any.
    Bar(Option<ProgressBar>),
    Lines,
}

/// A fresh bar for one phase: a finished bar is never drawn again.
fn phase_bar(length: usize, message: &'static str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(length as u64), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos}/{len} target(s) {wide_msg}")
            .expect("a valid template"),
    );
    bar.set_message(message);
    bar
}

impl Reporter {
    /// The reporter for a command whose output has this format: nothing for JSON, a bar when
    /// stderr is a terminal, plain lines otherwise.
    pub fn for_output(format: Format) -> Self {
        if format == Format::Json {
            return Reporter::quiet();
        }
        if std::io::stderr().is_terminal() {
            Reporter(Some(Arc::new(Mutex::new(Draw::Bar(None)))))
        } else {
            Reporter(Some(Arc::new(Mutex::new(Draw::Lines))))
        }
    }

    /// Draws nothing.
    pub fn quiet() -> Self {
        Reporter(None)
    }

    /// Where the engine sends events for this reporter.
    pub fn events(&self) -> Events {
        match &self.0 {
            None => Events::none(),
            Some(draw) => {
                let draw = draw.clone();
                Events::to(move |e| {
                    let mut d = draw
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    d.show(&e);
                })
            }
        }
    }

    /// Clears a progress bar before the command prints its result.
    pub fn finish(&self) {
        if let Some(draw) = &self.0
            && let Draw::Bar(bar) = &mut *draw
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
            && let Some(bar) = bar.take()
        {
            bar.finish_and_clear();
        }
    }
}

impl Draw {
    fn show(&mut self, e: &Event) {
        match self {
            Draw::Bar(bar) => match e {
                Event::ObserveStarted { targets } => {
                    if let Some(old) = bar.replace(phase_bar(*targets, "reading")) {
                        old.finish_and_clear();
                    }
                }
                Event::ApplyStarted { targets, .. } => {
                    if let Some(old) = bar.replace(phase_bar(*targets, "applying")) {
                        old.finish_and_clear();
                    }
                }
                Event::TargetPlanned { address, .. } => {
                    if let Some(bar) = bar {
                        bar.inc(1);
                        bar.set_message(format!("read {address}"));
                    }
                }
                Event::Progress {
                    address,
                    what,
                    done,
                    total,
                } => {
                    if let Some(bar) = bar {
                        bar.set_message(format!("{address}: {done}/{total} {what}"));
                    }
                }
                Event::TargetApplied { address, .. } => {
                    if let Some(bar) = bar {
                        bar.inc(1);
                        bar.set_message(format!("applied {address}"));
                    }
                }
            },
            Draw::Lines => {
                if let Some(line) = line(e) {
                    eprintln!("wispctl: {line}");
                }
            }
        }
    }
}

/// The plain line for an event; per-object progress only when a target's objects are done.
fn line(e: &Event) -> Option<String> {
    Some(match e {
        Event::ObserveStarted { targets } => format!("reading {targets} target(s)"),
        Event::TargetPlanned {
            address,
            changes,
            error: None,
        } => format!("{address}: read, {changes} change(s)"),
        Event::TargetPlanned {
            address,
            error: Some(_),
            ..
        } => format!("{address}: could not be read (see the plan)"),
        Event::Progress {
            address,
            what,
            done,
            total,
        } if done == total => format!("{address}: {done} {what}"),
        Event::Progress { .. } => return None,
        Event::ApplyStarted { targets, changes } => {
            format!("applying {changes} change(s) to {targets} target(s)")
        }
        Event::TargetApplied {
            address,
            applied,
            failed,
        } => format!("{address}: {applied} applied, {failed} failed or skipped"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_name_targets_and_counts_and_skip_partial_progress() {
        assert_eq!(
            line(&Event::TargetPlanned {
                address: "pppoe.r1".into(),
                changes: 3,
                error: None
            })
            .as_deref(),
            Some("pppoe.r1: read, 3 change(s)")
        );
        let partial = Event::Progress {
            address: "airos.g".into(),
            what: "antennas read",
            done: 2,
            total: 5,
        };
        assert_eq!(line(&partial), None);
        let done = Event::Progress {
            address: "airos.g".into(),
            what: "antennas read",
            done: 5,
            total: 5,
        };
        assert_eq!(line(&done).as_deref(), Some("airos.g: 5 antennas read"));
    }

    #[test]
    fn json_output_draws_nothing() {
        assert!(Reporter::for_output(Format::Json).0.is_none());
    }
}
