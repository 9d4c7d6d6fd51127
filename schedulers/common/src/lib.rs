//! The user-space side every scheduler in `schedulers/` shares: the stop
//! request (SIGINT or SIGTERM), the wait loop that also watches the BPF
//! side's exit, and the lines the harness reads from the scheduler's output.
//!
//! Loading and attaching stay in each scheduler's `main.rs`: scx_utils'
//! macros are generated per skeleton type.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Set once SIGINT or SIGTERM has arrived.
#[derive(Clone)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// Installs the SIGINT/SIGTERM handler. Call once.
    pub fn install() -> Result<Stop> {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        ctrlc::set_handler(move || f.store(true, Ordering::SeqCst))
            .context("installing the SIGINT/SIGTERM handler")?;
        Ok(Stop(flag))
    }

    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Why [`wait`] returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Woke {
    /// SIGINT or SIGTERM: detach and report.
    Stop,
    /// The BPF side exited on its own (its exit info says why).
    Exited,
    /// `tick` asked to stop waiting.
    Tick,
}

/// Waits until a stop is requested, `exited()` is true, or `tick(elapsed)`
/// returns true, checking every 100 ms.
pub fn wait(
    stop: &Stop,
    mut exited: impl FnMut() -> bool,
    mut tick: impl FnMut(Duration) -> bool,
) -> Woke {
    let started = Instant::now();
    loop {
        if stop.requested() {
            return Woke::Stop;
        }
        if exited() {
            return Woke::Exited;
        }
        if tick(started.elapsed()) {
            return Woke::Tick;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The ops name the kernel will show in `/sys/kernel/sched_ext/root/ops`,
/// from the struct_ops `name` field (scx_utils appends a version suffix).
pub fn ops_name(raw: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = raw
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The line a scheduler prints once attached; the harness does not depend
/// on it (it reads sysfs), people do.
pub fn announce_attached(scheduler: &str, ops: &str) {
    eprintln!("{scheduler}: attached as {ops:?}; SIGINT or SIGTERM detaches");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_name_stops_at_nul() {
        let raw: Vec<std::ffi::c_char> = b"fifo_0.1.0\0junk"
            .iter()
            .map(|b| *b as std::ffi::c_char)
            .collect();
        assert_eq!(ops_name(&raw), "fifo_0.1.0");
    }

    #[test]
    fn tick_ends_the_wait() {
        let stop = Stop(Arc::new(AtomicBool::new(false)));
        let mut n = 0;
        let woke = wait(
            &stop,
            || false,
            |_| {
                n += 1;
                n == 3
            },
        );
        assert_eq!(woke, Woke::Tick);
        assert_eq!(n, 3);
    }

    #[test]
    fn stop_and_exit_are_seen() {
        let stop = Stop(Arc::new(AtomicBool::new(true)));
        assert_eq!(wait(&stop, || false, |_| false), Woke::Stop);
        let stop = Stop(Arc::new(AtomicBool::new(false)));
        assert_eq!(wait(&stop, || true, |_| false), Woke::Exited);
    }
}
