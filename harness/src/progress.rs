//! Progress of long host-side work (a kernel build): the stage, how long it
//! has been running, and the latest line of detail.
//!
//! On a terminal this is an indicatif spinner; elsewhere (CI logs, pipes) a
//! line per stage and a heartbeat line at most once a minute, so a 14-minute
//! build never looks hung and never floods the log.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    what: String,
    started: Instant,
    stage_started: Instant,
    stage: String,
    bar: Option<ProgressBar>,
    last_heartbeat: Instant,
    /// Prints nothing at all (lookups that may unpack but never build).
    hidden: bool,
}

impl Progress {
    /// `what` is the whole job ("kernel build 3f2a…").
    pub fn new(what: &str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {prefix}: {wide_msg}")
                    .expect("valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            what: what.to_string(),
            started: Instant::now(),
            stage_started: Instant::now(),
            stage: String::new(),
            bar,
            last_heartbeat: Instant::now(),
            hidden: false,
        }
    }

    /// Progress that prints nothing.
    pub fn hidden() -> Progress {
        Progress {
            what: String::new(),
            started: Instant::now(),
            stage_started: Instant::now(),
            stage: String::new(),
            bar: None,
            last_heartbeat: Instant::now(),
            hidden: true,
        }
    }

    pub fn stage(&mut self, stage: &str) {
        if self.hidden {
            return;
        }
        self.stage = stage.to_string();
        self.stage_started = Instant::now();
        match &self.bar {
            Some(bar) => {
                bar.set_prefix(format!("{}: {stage}", self.what));
                bar.set_message("");
            }
            None => eprintln!(
                "[{}] {}: {stage}",
                fmt_elapsed(self.started.elapsed()),
                self.what
            ),
        }
    }

    /// A line of detail (the latest `CC ...` of a build).
    pub fn detail(&mut self, line: &str) {
        if self.hidden {
            return;
        }
        match &self.bar {
            Some(bar) => bar.set_message(line.trim().to_string()),
            None if self.last_heartbeat.elapsed() >= Duration::from_secs(60) => {
                self.last_heartbeat = Instant::now();
                eprintln!(
                    "[{}] {}: {} ({} in this stage) {}",
                    fmt_elapsed(self.started.elapsed()),
                    self.what,
                    self.stage,
                    fmt_elapsed(self.stage_started.elapsed()),
                    line.trim()
                );
            }
            None => {}
        }
    }

    pub fn finish(self, summary: &str) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.hidden {
            return;
        }
        eprintln!(
            "[{}] {}: {summary}",
            fmt_elapsed(self.started.elapsed()),
            self.what
        );
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `mm:ss`, or `h:mm:ss` past an hour.
pub fn fmt_elapsed(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{:02}:{:02}", s / 60, s % 60)
    }
}
