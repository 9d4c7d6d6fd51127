//! The workload engine (guest side): one process per scenario group, run as
//! `scx-harness guest workload-group`, whose threads do the group's work
//! from its start to its stop time and count their iterations.
//!
//! The agent starts the process, tracks it in the probe, puts it in its
//! cgroup, then writes the run's start time (`t0`, CLOCK_MONOTONIC ns) on
//! its stdin; every thread sleeps until `t0 + start`, works until
//! `t0 + stop`, and the process writes a [`GroupOutcome`] as JSON. The same
//! seed gives every thread the same random choices. Knows scenarios' work
//! kinds; nothing about schedulers, the probe or VMs.

mod work;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::kernel::cache::write_atomic;
use crate::probe::now_ns;
use crate::scenario::Work;

/// What a group process is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GroupSpec {
    pub index: u32,
    pub name: String,
    pub threads: u32,
    pub work: Work,
    pub nice: i32,
    pub cpus: Option<Vec<u32>>,
    pub comm: String,
    /// The scenario's seed; each thread's random stream derives from it,
    /// the group index and the thread index.
    pub seed: u64,
    /// Offsets from t0: when the group works, and the measurement window
    /// (iterations completed inside it are counted apart).
    pub start_ns: u64,
    pub stop_ns: u64,
    pub window_start_ns: u64,
    pub window_end_ns: u64,
    /// Where to write the outcome (JSON).
    pub out: PathBuf,
    /// Where a `command` group keeps its instances' output.
    pub output_dir: PathBuf,
}

/// One thread's count.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ThreadOutcome {
    pub tid: u32,
    pub iterations: u64,
    /// Iterations completed inside the measurement window.
    pub iterations_window: u64,
    /// CPU time (`/proc/thread-self/schedstat` field 1) and time spent
    /// runnable but waiting (field 2, `run_delay`), whole life of the
    /// thread: a second source beside the probe.
    pub cpu_ns: u64,
    pub schedstat_wait_ns: u64,
}

/// What a group process reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupOutcome {
    pub name: String,
    pub pid: u32,
    pub threads: Vec<ThreadOutcome>,
    /// Set when a thread could not do its work (a failed syscall).
    pub errors: Vec<String>,
}

/// The deterministic random stream of one thread (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn for_thread(seed: u64, group: u32, thread: u32) -> Rng {
        Rng(seed ^ (u64::from(group) << 40) ^ (u64::from(thread) << 20) ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let (lo, hi) = (lo.as_nanos() as u64, hi.as_nanos() as u64);
        if hi <= lo {
            return Duration::from_nanos(lo);
        }
        Duration::from_nanos(lo + self.next_u64() % (hi - lo + 1))
    }
}

/// Sleeps until `at` (CLOCK_MONOTONIC ns), through signals.
pub fn sleep_until(at: u64) {
    let ts = libc::timespec {
        tv_sec: (at / 1_000_000_000) as libc::time_t,
        tv_nsec: (at % 1_000_000_000) as libc::c_long,
    };
    // SAFETY: an absolute sleep on a valid timespec; EINTR retries.
    while unsafe {
        libc::clock_nanosleep(
            libc::CLOCK_MONOTONIC,
            libc::TIMER_ABSTIME,
            &ts,
            std::ptr::null_mut(),
        )
    } == libc::EINTR
    {}
}

fn gettid() -> u32 {
    // SAFETY: no arguments.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// Names the calling thread (its comm).
pub fn set_comm(comm: &str) {
    let mut name = [0u8; 16];
    for (d, s) in name.iter_mut().zip(comm.bytes().take(15)) {
        *d = s;
    }
    // SAFETY: PR_SET_NAME with a NUL-terminated 16-byte buffer.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// Applies the group's nice level and CPU affinity to the calling thread.
fn set_thread_policy(spec: &GroupSpec) -> Result<()> {
    let tid = gettid();
    // SAFETY: setpriority on our own thread id.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, spec.nice) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("setting nice {} on thread {tid}", spec.nice));
    }
    if let Some(cpus) = &spec.cpus {
        // SAFETY: a zeroed cpu_set_t filled with CPU_SET.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for c in cpus {
            unsafe { libc::CPU_SET(*c as usize, &mut set) };
        }
        if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0
        {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("pinning thread {tid} to CPUs {cpus:?}"));
        }
    }
    Ok(())
}

/// (sum_exec_runtime, run_delay) of the calling thread, ns.
fn thread_schedstat() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let mut f = text
        .split_whitespace()
        .map(|v| v.parse::<u64>().unwrap_or(0));
    (f.next().unwrap_or(0), f.next().unwrap_or(0))
}

/// The group process: sets up its threads, waits for t0 on stdin, runs the
/// work, writes the outcome. Its exit status is 0 when the outcome was
/// written, whatever the work's errors (they are in the outcome).
pub fn run_group(spec: &GroupSpec) -> Result<()> {
    set_comm(&format!("wl:{}", spec.comm));
    let n = spec.threads as usize;
    let plan = work::Plan::new(&spec.work, n).context("setting up the group's pipes")?;
    let plan = Arc::new(plan);
    let ready = Arc::new(Barrier::new(n + 1));
    let t0 = Arc::new(std::sync::OnceLock::<u64>::new());
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (spec, plan, ready, t0) = (spec.clone(), plan.clone(), ready.clone(), t0.clone());
        let h = std::thread::Builder::new()
            .name(format!("{}-{i}", spec.name))
            .spawn(move || -> (ThreadOutcome, Option<String>) {
                set_comm(&spec.comm);
                let policy = set_thread_policy(&spec);
                ready.wait(); // every thread set up
                ready.wait(); // t0 known
                let t0 = *t0.get().expect("t0 is set before the second barrier");
                let mut rng = Rng::for_thread(spec.seed, spec.index, i as u32);
                let mut error = policy.err().map(|e| format!("{e:#}"));
                let mut count =
                    work::Count::new(t0 + spec.window_start_ns, t0 + spec.window_end_ns);
                if error.is_none() {
                    sleep_until(t0 + spec.start_ns);
                    let ctx = work::Ctx {
                        index: i,
                        stop_at: t0 + spec.stop_ns,
                        count,
                        rng: &mut rng,
                        output_dir: &spec.output_dir,
                        group: &spec.name,
                    };
                    match plan.run(&spec.work, ctx) {
                        Ok(c) => count = c,
                        Err(e) => error = Some(format!("thread {i}: {e:#}")),
                    }
                }
                let (cpu_ns, schedstat_wait_ns) = thread_schedstat();
                (
                    ThreadOutcome {
                        tid: gettid(),
                        iterations: count.total,
                        iterations_window: count.window,
                        cpu_ns,
                        schedstat_wait_ns,
                    },
                    error,
                )
            })
            .context("starting a workload thread")?;
        handles.push(h);
    }
    ready.wait();
    // Every thread is set up: the agent picks t0 once every group says so.
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready")
            .and_then(|_| out.flush())
            .context("telling the agent the group is ready")?;
    }
    let line = std::io::stdin()
        .lock()
        .lines()
        .next()
        .context("the agent closed stdin before sending t0")??;
    let Some(at) = line
        .strip_prefix("t0 ")
        .and_then(|v| v.trim().parse::<u64>().ok())
    else {
        bail!("expected \"t0 NS\" on stdin, got {line:?}");
    };
    t0.set(at).expect("t0 is set once");
    ready.wait();
    let mut outcome = GroupOutcome {
        name: spec.name.clone(),
        pid: std::process::id(),
        ..Default::default()
    };
    for h in handles {
        match h.join() {
            Ok((t, err)) => {
                outcome.threads.push(t);
                outcome.errors.extend(err);
            }
            Err(_) => outcome.errors.push("a workload thread panicked".into()),
        }
    }
    write_atomic(&spec.out, &serde_json::to_vec(&outcome)?)
}

/// Now, for callers that want "t0 a little in the future".
pub fn t0_after(delay: Duration) -> u64 {
    now_ns() + delay.as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let draw = |seed, g, t| {
            let mut r = Rng::for_thread(seed, g, t);
            (0..5).map(|_| r.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7, 1, 2), draw(7, 1, 2));
        assert_ne!(draw(7, 1, 2), draw(8, 1, 2));
        assert_ne!(draw(7, 1, 2), draw(7, 2, 2));
        assert_ne!(draw(7, 1, 2), draw(7, 1, 3));
        let mut r = Rng::for_thread(1, 0, 0);
        for _ in 0..1000 {
            let d = r.between(Duration::from_millis(1), Duration::from_millis(3));
            assert!(d >= Duration::from_millis(1) && d <= Duration::from_millis(3));
        }
    }
}
