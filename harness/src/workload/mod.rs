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

pub mod app;
mod work;
pub use work::Distribution;

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::kernel::cache::write_atomic;
use crate::probe::now_ns;
use crate::scenario::{Policy, Tasks, Work};
use crate::sched;

/// What a group process is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GroupSpec {
    pub index: u32,
    pub name: String,
    pub threads: u32,
    pub work: Work,
    pub nice: i32,
    /// Policy and real-time priority (0 unless fifo or rr).
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub priority: u32,
    /// Threads of this process, or a process each.
    #[serde(default)]
    pub tasks: Tasks,
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
    /// Where a `command` group keeps its instances' output:
    /// `OUTPUT_DIR/PASS-GROUP-INDEX.out` (and `.server.out`).
    pub output_dir: PathBuf,
    /// The pass's name in those files' names (`fair`, `scheduler`), so one
    /// pass's output does not overwrite another's.
    #[serde(default)]
    pub output_pass: String,
    /// `$SCX_HARNESS_APPS` for `command` groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apps_dir: Option<PathBuf>,
    /// The VM's scratch disk, for `block_io` (absent on the host target:
    /// a scratch file in `output_dir` instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scratch_disk: Option<PathBuf>,
    /// A `replay` group's part in the pass's couplings (absent when no
    /// group of the scenario is woken by another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub couplings: Option<Couplings>,
}

/// Where a `replay` group's tasks wait for other groups' wakeups and wake
/// the tasks waiting for theirs: a memory file the agent holds open for
/// the pass ([`Mailbox`]) of one word per woken group and waking group,
/// the wakeups that waking group has made and the woken group's tasks
/// have not yet taken (a counting semaphore on a futex: a wakeup made
/// while none of them waits is taken by the next one that would wait,
/// which then does not sleep, as a server finds a request already
/// queued).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Couplings {
    /// The scenario's seed: whom a task wakes and whose wakeup it waits
    /// for are drawn from a stream of their own derived from it.
    pub seed: u64,
    /// The memory file, as `/proc/AGENT/fd/N`.
    pub mailbox: PathBuf,
    /// Its words ([`mailbox_words`]).
    pub words: u32,
    /// The groups that wake this one's tasks, in `woken_by`'s order.
    pub wakers: Vec<Waker>,
    /// The groups whose tasks this one's wake.
    pub wakees: Vec<Wakee>,
}

/// A group that wakes this one's tasks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Waker {
    /// The waking group's index in the scenario, and its name.
    pub group: u32,
    pub name: String,
    /// The share of this group's sleeps it ends (0 to 1).
    pub share: f64,
    /// How long a task waits for it before it wakes on its own (a missed
    /// wakeup): this group's longest recorded sleep plus three of the
    /// mean intervals between the waking group's wakeups of one of this
    /// group's tasks (its wakeups of the group over the group's threads),
    /// from 1 ms to 60 s. ns.
    pub grace_ns: u64,
    /// The mailbox word of its wakeups of this group.
    pub word: u32,
}

/// A group whose tasks this one's wake.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Wakee {
    /// Its index in the scenario, and its threads: at most that many of
    /// this group's wakeups wait to be taken (more are dropped).
    pub group: u32,
    pub threads: u32,
    /// Another group: the chance that one of this group's bursts ends
    /// with a wakeup of it: its share of that group's sleeps times that
    /// group's burst rate over this one's (a rate: the threads over the
    /// mean burst plus the mean sleep), at most 1.
    pub per_burst: f64,
    /// This group itself (a pool whose tasks wake each other: a server
    /// and its clients with requests in flight): the wakeups kept in
    /// flight, each passed on at the end of the burst it began (a burst
    /// no wakeup began passes none on), so the pool neither dies out nor
    /// runs every task at once. Its tasks in a burst that a wakeup of
    /// the pool began, on average: the share times the threads times the
    /// mean burst over the mean burst plus the mean sleep, rounded, at
    /// most the threads. 0 for another group, and for a sparse pool
    /// (under half a task so on average; one kept in flight would run a
    /// task at all times): `per_burst` then, its timed sleeps keeping
    /// the chain going.
    pub in_flight: u32,
    /// The mailbox word of this group's wakeups of it.
    pub word: u32,
}

/// The words of a pass's mailbox for `s`: one per woken group and waking
/// group, whether coupled or not (a few: groups squared).
pub fn mailbox_words(s: &crate::scenario::Scenario) -> u32 {
    (s.groups.len() as u32).pow(2).max(1)
}

impl Couplings {
    /// Group `i`'s couplings in `s` with the pass's mailbox at `mailbox`
    /// (made when [`coupled`]), or None when group `i` is not a `replay`
    /// group or neither wakes nor is woken by another.
    pub fn of(s: &crate::scenario::Scenario, i: usize, mailbox: &Path) -> Option<Couplings> {
        type Replayed<'a> = (
            Distribution<'a>,
            Distribution<'a>,
            &'a [crate::scenario::Coupling],
        );
        fn replay(g: &crate::scenario::Group) -> Option<Replayed<'_>> {
            match &g.work {
                Work::Replay {
                    run,
                    sleep,
                    run_mean,
                    sleep_mean,
                    woken_by,
                } => Some((
                    Distribution::new(run, *run_mean),
                    Distribution::new(sleep, *sleep_mean),
                    woken_by,
                )),
                _ => None,
            }
        }
        // Bursts a ns, all threads.
        let rate = |g: &crate::scenario::Group| {
            replay(g).map_or(0.0, |(run, sleep, _)| {
                f64::from(g.threads) / (run.mean() + sleep.mean()).max(1.0)
            })
        };
        let index = |name: &str| s.groups.iter().position(|g| g.name == name);
        let per_burst =
            |wakee: &crate::scenario::Group, waker: &crate::scenario::Group, share: f64| {
                (share * rate(wakee) / rate(waker).max(1e-30)).min(1.0)
            };
        // The word of group `waker`'s wakeups of group `wakee`.
        let word = |wakee: usize, waker: usize| (wakee * s.groups.len() + waker) as u32;
        let me = s.groups.get(i)?;
        let (_, sleep, woken_by) = replay(me)?;
        let wakers: Vec<Waker> = woken_by
            .iter()
            .filter_map(|c| {
                let j = index(&c.group)?;
                let by = &s.groups[j];
                let wakes = rate(by) * per_burst(me, by, c.share);
                let longest = sleep.max().as_nanos() as f64;
                Some(Waker {
                    group: j as u32,
                    name: by.name.clone(),
                    share: c.share,
                    grace_ns: (longest + 3.0 * f64::from(me.threads) / wakes.max(1e-30))
                        .clamp(1e6, 60e9) as u64,
                    word: word(i, j),
                })
            })
            .collect();
        let wakees: Vec<Wakee> = s
            .groups
            .iter()
            .enumerate()
            .filter_map(|(j, g)| {
                let (run, sleep, woken_by) = replay(g)?;
                let c = woken_by.iter().find(|c| c.group == me.name)?;
                let busy = run.mean() / (run.mean() + sleep.mean()).max(1.0);
                let in_flight = if j == i {
                    (c.share * f64::from(g.threads) * busy)
                        .round()
                        .min(f64::from(g.threads)) as u32
                } else {
                    0
                };
                Some(Wakee {
                    group: j as u32,
                    threads: g.threads,
                    per_burst: per_burst(g, me, c.share),
                    in_flight,
                    word: word(j, i),
                })
            })
            .collect();
        if wakers.is_empty() && wakees.is_empty() {
            return None;
        }
        Some(Couplings {
            seed: s.seed,
            mailbox: mailbox.to_path_buf(),
            words: mailbox_words(s),
            wakers,
            wakees,
        })
    }
}

/// True when a group of `s` is woken by another's tasks (`replay`'s
/// `woken_by`): its passes need a [`Mailbox`].
pub fn coupled(s: &crate::scenario::Scenario) -> bool {
    s.groups
        .iter()
        .any(|g| matches!(&g.work, Work::Replay { woken_by, .. } if !woken_by.is_empty()))
}

/// The pass's memory file of wakeup words (`Couplings::mailbox`), made by
/// the agent and held open until the pass's groups are done; gone with
/// the agent (no name in any file system).
pub struct Mailbox(std::os::fd::OwnedFd);

impl Mailbox {
    /// A memory file of `words` zeroed words ([`mailbox_words`]). Errors:
    /// memfd_create or ftruncate fails (errno attached).
    pub fn create(words: u32) -> Result<Mailbox> {
        use std::os::fd::FromRawFd;
        // SAFETY: a NUL-terminated name and valid flags.
        let fd =
            unsafe { libc::memfd_create(c"scx-harness-couplings".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error())
                .context("memfd_create for the couplings' mailbox");
        }
        // SAFETY: a fresh descriptor, owned from here.
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let file = std::fs::File::from(fd);
        file.set_len(work::mailbox_bytes(words) as u64)
            .context("sizing the couplings' mailbox")?;
        Ok(Mailbox(file.into()))
    }

    /// The path a group process opens it by.
    pub fn path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!(
            "/proc/{}/fd/{}",
            std::process::id(),
            self.0.as_raw_fd()
        ))
    }
}

/// One thread's count.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
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
    /// A `command` task's exit status, when it exited on its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    /// A `command` task's application: its wall time, the metrics read
    /// from its output, why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<app::AppOutcome>,
    /// A coupled `replay` task's sleeps in the window ended by each
    /// waking group, in `woken_by`'s order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub woken_by: Vec<WokenCount>,
}

/// A coupled task's sleeps that one group was to end, in the window.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct WokenCount {
    pub group: String,
    /// Ended by a wakeup from that group's task.
    pub woken: u64,
    /// Ended on their own: no task of that group ended a burst in time.
    pub missed: u64,
}

/// What a group process reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GroupOutcome {
    pub name: String,
    pub pid: u32,
    pub threads: Vec<ThreadOutcome>,
    /// Set when a thread could not do its work (a failed syscall).
    pub errors: Vec<String>,
}

impl GroupOutcome {
    /// What each instance of a `command` group's application did (none
    /// for other work kinds).
    pub fn apps(&self) -> impl Iterator<Item = &app::AppOutcome> {
        self.threads.iter().filter_map(|t| t.app.as_ref())
    }
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

    /// Uniform in [0, 1), from 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
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

/// Names the calling thread (its comm).
pub fn set_comm(comm: &str) {
    let mut name = [0u8; 16];
    for (d, s) in name.iter_mut().zip(comm.bytes().take(15)) {
        *d = s;
    }
    // SAFETY: PR_SET_NAME with a NUL-terminated 16-byte buffer.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// Applies the group's policy, nice level and CPU affinity to the calling
/// thread.
fn set_thread_policy(spec: &GroupSpec) -> Result<()> {
    let tid = sched::gettid();
    sched::set_nice(tid, spec.nice)?;
    if spec.policy != Policy::Other {
        sched::set_policy(tid, spec.policy, spec.priority)?;
    }
    if let Some(cpus) = &spec.cpus {
        sched::set_affinity(tid, cpus)?;
    }
    Ok(())
}

/// (sum_exec_runtime, run_delay) of the calling thread, ns.
fn thread_schedstat() -> (u64, u64) {
    crate::process::schedstat("/proc/thread-self/schedstat").unwrap_or_default()
}

/// One task's life from t0: sleeps to the group's start, works to its
/// stop, and reports its count (and the error that stopped it, if one did).
fn task_body(
    spec: &GroupSpec,
    plan: &work::Plan,
    i: usize,
    t0: u64,
    setup: Result<()>,
) -> (ThreadOutcome, Option<String>) {
    let mut rng = Rng::for_thread(spec.seed, spec.index, i as u32);
    let mut error = setup.err().map(|e| format!("{e:#}"));
    let mut count = work::Count::new(t0 + spec.window_start_ns, t0 + spec.window_end_ns);
    let mut app = None;
    if error.is_none() {
        sleep_until(t0 + spec.start_ns);
        let stop_at = t0 + spec.stop_ns;
        let done = match &spec.work {
            Work::Command {
                argv,
                exit,
                server,
                metrics,
            } => app::run(&app::AppTask {
                argv,
                exit: *exit,
                server: server.as_ref(),
                metrics,
                stop_at,
                apps_dir: spec.apps_dir.as_deref(),
                output: spec.output_dir.join(match spec.output_pass.as_str() {
                    "" => format!("{}-{i}", spec.name),
                    pass => format!("{pass}-{}-{i}", spec.name),
                }),
            })
            .map(|o| app = Some(o)),
            work => {
                let ctx = work::Ctx {
                    index: i,
                    group: spec.index,
                    stop_at,
                    count: count.clone(),
                    rng: &mut rng,
                };
                plan.run(work, ctx).map(|c| count = c)
            }
        };
        if let Err(e) = done {
            error = Some(format!("task {i}: {e:#}"));
        }
    }
    let (cpu_ns, schedstat_wait_ns) = thread_schedstat();
    (
        ThreadOutcome {
            tid: sched::gettid(),
            iterations: count.total,
            iterations_window: count.window,
            cpu_ns,
            schedstat_wait_ns,
            exit_status: app.as_ref().and_then(|a: &app::AppOutcome| a.exit_status),
            app,
            woken_by: spec
                .couplings
                .iter()
                .flat_map(|c| &c.wakers)
                .zip(&count.coupled)
                .map(|(w, &[woken, missed])| WokenCount {
                    group: w.name.clone(),
                    woken,
                    missed,
                })
                .collect(),
        },
        error,
    )
}

/// Tells the agent the group is ready, with its tasks' ids (threads' tids,
/// or task processes' pids), and reads t0 from stdin.
fn handshake(tasks: &[u32]) -> Result<u64> {
    {
        let mut out = std::io::stdout().lock();
        let mut line = String::from(READY);
        for p in tasks {
            line.push_str(&format!(" {p}"));
        }
        writeln!(out, "{line}")
            .and_then(|_| out.flush())
            .context("telling the agent the group is ready")?;
    }
    let line = read_line("t0")?;
    let Some(at) = line
        .strip_prefix("t0 ")
        .and_then(|v| v.trim().parse::<u64>().ok())
    else {
        bail!("expected \"t0 NS\" on stdin, got {line:?}");
    };
    Ok(at)
}

/// A group process started ahead of its cell (`agent`'s serving session)
/// reads its spec as the first line on stdin, before "go".
pub fn spec_from_stdin() -> Result<GroupSpec> {
    let line = read_line("the group's spec")?;
    serde_json::from_str(&line).context("the group's spec on stdin")
}

/// One line from the agent on stdin.
fn read_line(what: &str) -> Result<String> {
    std::io::stdin()
        .lock()
        .lines()
        .next()
        .with_context(|| format!("the agent closed stdin before sending {what}"))?
        .with_context(|| format!("reading {what} from stdin"))
}

/// What the agent says once the group process is in its cgroup and
/// tracked by the probe: only then are its tasks made (a task process
/// forked earlier would be in neither).
pub const GO: &str = "go";

/// What a group process says when every task is set up: `ready`, then the
/// ids of its tasks (threads' tids, or with `tasks: processes` the task
/// processes' pids), space-separated.
pub const READY: &str = "ready";

/// Reads a group's ready line: None if it is not one, else its tasks' ids.
pub fn parse_ready(line: &str) -> Option<Vec<u32>> {
    let mut words = line.split_whitespace();
    if words.next() != Some(READY) {
        return None;
    }
    words.map(|w| w.parse().ok()).collect()
}

/// The group process: sets up its tasks (threads, or processes forked
/// before any thread exists), waits for t0 on stdin, runs the work, writes
/// the outcome. Its exit status is 0 when the outcome was written, whatever
/// the work's errors (they are in the outcome).
pub fn run_group(spec: &GroupSpec) -> Result<()> {
    set_comm(&format!("wl:{}", spec.comm));
    let go = read_line(GO)?;
    if go.trim() != GO {
        bail!("expected \"{GO}\" on stdin, got {go:?}");
    }
    let n = spec.threads as usize;
    let plan = work::Plan::new(
        &spec.work,
        n,
        spec.scratch_disk.as_deref(),
        &spec.output_dir,
        spec.couplings.as_ref(),
    )
    .with_context(|| format!("setting up the group's {} work", spec.work.kind()))?;
    let outcome = match spec.tasks {
        Tasks::Threads => run_threads(spec, plan, n)?,
        Tasks::Processes => run_processes(spec, &plan, n)?,
    };
    write_atomic(&spec.out, &serde_json::to_vec(&outcome)?)
}

fn run_threads(spec: &GroupSpec, plan: work::Plan, n: usize) -> Result<GroupOutcome> {
    let plan = Arc::new(plan);
    let ready = Arc::new(Barrier::new(n + 1));
    let t0 = Arc::new(std::sync::OnceLock::<u64>::new());
    // Each thread's tid at its index: the timeline's seeded choices of
    // tasks go by position, so a rerun picks the same threads.
    let tids = Arc::new(std::sync::Mutex::new(vec![0u32; n]));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let (spec, plan, ready, t0, tids) = (
            spec.clone(),
            plan.clone(),
            ready.clone(),
            t0.clone(),
            tids.clone(),
        );
        let h = std::thread::Builder::new()
            .name(format!("{}-{i}", spec.name))
            .spawn(move || -> (ThreadOutcome, Option<String>) {
                set_comm(&spec.comm);
                let setup = set_thread_policy(&spec);
                tids.lock().expect("no thread panics holding it")[i] = sched::gettid();
                ready.wait(); // every thread set up
                ready.wait(); // t0 known
                let t0 = *t0.get().expect("t0 is set before the second barrier");
                task_body(&spec, &plan, i, t0, setup)
            })
            .context("starting a workload thread")?;
        handles.push(h);
    }
    ready.wait();
    // Every thread is set up: the agent picks t0 once every group says so.
    let tids = tids.lock().expect("no thread panics holding it").clone();
    t0.set(handshake(&tids)?).expect("t0 is set once");
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
    Ok(outcome)
}

/// `tasks: processes`: a child process per task, forked while this process
/// has one thread (so each child may run any code). Each tells its
/// readiness with a byte on a shared pipe, reads t0 from a pipe of its own,
/// works, writes its count to `OUT.task-I` and exits; it dies with this
/// process (PR_SET_PDEATHSIG).
fn run_processes(spec: &GroupSpec, plan: &work::Plan, n: usize) -> Result<GroupOutcome> {
    use std::io::Read;
    let (mut ready_r, ready_w) = std::io::pipe().context("pipe()")?;
    let mut children = Vec::with_capacity(n);
    for i in 0..n {
        let (start_r, start_w) = std::io::pipe().context("pipe()")?;
        // SAFETY: this process has a single thread here (no thread is
        // started before the children are forked), so the child may run
        // any code; it leaves through _exit and never returns.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(std::io::Error::last_os_error()).context("fork() of a task process");
        }
        if pid == 0 {
            drop(start_w);
            let code = task_process(spec, plan, i, &ready_w, start_r);
            // SAFETY: ending the child without running the parent's
            // destructors or atexit handlers twice.
            unsafe { libc::_exit(code) };
        }
        drop(start_r);
        children.push((pid as u32, start_w));
    }
    drop(ready_w);
    let mut got = vec![0u8; n];
    ready_r
        .read_exact(&mut got)
        .context("waiting for the task processes to be set up (one died?)")?;
    let pids: Vec<u32> = children.iter().map(|(p, _)| *p).collect();
    let t0 = handshake(&pids)?;
    for (_, w) in &mut children {
        // A child that died meanwhile is found by its missing count.
        let _ = w.write_all(&t0.to_ne_bytes());
    }
    let mut outcome = GroupOutcome {
        name: spec.name.clone(),
        pid: std::process::id(),
        ..Default::default()
    };
    for (i, (pid, _)) in children.iter().enumerate() {
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(*pid as i32, &mut status, 0) };
        let path = task_out(&spec.out, i);
        match std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<(ThreadOutcome, Option<String>)>(&b).ok())
        {
            Some((t, err)) => {
                outcome.threads.push(t);
                outcome.errors.extend(err);
            }
            None => outcome.errors.push(format!(
                "task process {pid} ({i}) wrote no count (wait status {status:#x})"
            )),
        }
        let _ = std::fs::remove_file(&path);
    }
    Ok(outcome)
}

fn task_out(out: &std::path::Path, i: usize) -> PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(format!(".task-{i}"));
    PathBuf::from(p)
}

/// The life of one task process; its exit code.
fn task_process(
    spec: &GroupSpec,
    plan: &work::Plan,
    i: usize,
    ready: &std::io::PipeWriter,
    mut start: std::io::PipeReader,
) -> i32 {
    use std::io::Read;
    // SAFETY: prctl on ourselves; then the parent may already be gone.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if unsafe { libc::getppid() } == 1 {
        return 1;
    }
    set_comm(&spec.comm);
    let setup = set_thread_policy(spec);
    if (&*ready).write_all(b"r").is_err() {
        return 1;
    }
    // Its copy of the write end goes, so that the parent sees the pipe's
    // end if a sibling dies before it is ready. (The child leaves through
    // _exit: the PipeWriter's own close never runs.)
    // SAFETY: closing a descriptor this process owns and no longer uses.
    unsafe { libc::close(std::os::fd::AsRawFd::as_raw_fd(ready)) };
    let mut t0 = [0u8; 8];
    if start.read_exact(&mut t0).is_err() {
        return 1;
    }
    let result = task_body(spec, plan, i, u64::from_ne_bytes(t0), setup);
    match serde_json::to_vec(&result)
        .map_err(anyhow::Error::from)
        .and_then(|b| write_atomic(&task_out(&spec.out, i), &b))
    {
        Ok(()) => 0,
        Err(_) => 1,
    }
}

/// Now, for callers that want "t0 a little in the future".
pub fn t0_after(delay: Duration) -> u64 {
    now_ns() + delay.as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server (1 thread, a burst and sleep of 1 and 9 ms on average: 100
    /// bursts a second) woken by a client (2 threads, 1 and 19 ms: 100 a
    /// second) for half its sleeps: half the client's bursts wake it.
    #[test]
    fn couplings_spread_a_groups_wakeups_over_the_wakers_bursts() {
        let text = "name: c\ndescription: d\nduration: 3s\ngroups:\n  - { name: server, work: { kind: replay, run: [1ms, 1ms], sleep: [8ms, 10ms], woken_by: [{ group: client, share: 0.5 }] } }\n  - { name: client, threads: 2, work: { kind: replay, run: [500us, 1500us], sleep: [19ms, 19ms] } }\n  - { name: hog, work: { kind: spin } }\n";
        let s = crate::scenario::parse(Path::new("c.yaml"), text)
            .unwrap()
            .scenario;
        assert!(coupled(&s));
        let m = Path::new("/proc/1/fd/3");
        let server = Couplings::of(&s, 0, m).unwrap();
        let client = Couplings::of(&s, 1, m).unwrap();
        assert_eq!(Couplings::of(&s, 2, m), None, "spin takes no part");
        assert_eq!(server.words, 9, "3 groups, squared");
        let w = &server.wakers[0];
        assert_eq!((w.group, w.name.as_str(), w.share), (1, "client", 0.5));
        // The longest sleep (10 ms) and three of the client's intervals
        // between its wakeups of the server (50 a second: 20 ms).
        assert!((w.grace_ns as f64 - 70e6).abs() < 1e3, "{w:?}");
        assert!(server.wakees.is_empty());
        let e = &client.wakees[0];
        assert_eq!((e.group, e.threads, e.in_flight), (0, 1, 0));
        assert_eq!(
            (w.word, e.word),
            (1, 1),
            "the client's wakeups of the server"
        );
        assert!((e.per_burst - 0.5).abs() < 1e-9, "{e:?}");
    }

    /// A pool of 4 tasks busy half the time (1 ms bursts, 1 ms sleeps),
    /// woken by itself for 60% of its sleeps, keeps round(0.6 x 4 x 0.5)
    /// = 1 wakeup in flight; for all of them, 2; for a fifth, none (0.4:
    /// a draw at each burst end instead); it waits on and wakes the same
    /// word.
    #[test]
    fn a_pool_keeps_its_tasks_in_a_burst_a_wakeup_began_in_flight() {
        let pool = |share: f64| {
            let text = format!("name: c\ndescription: d\nduration: 3s\ngroups:\n  - {{ name: pool, threads: 4, work: {{ kind: replay, run: [1ms, 1ms], sleep: [1ms, 1ms], woken_by: [{{ group: pool, share: {share} }}] }} }}\n");
            let s = crate::scenario::parse(Path::new("c.yaml"), &text)
                .unwrap()
                .scenario;
            Couplings::of(&s, 0, Path::new("/proc/1/fd/3")).unwrap()
        };
        for (share, in_flight) in [(0.2, 0), (0.6, 1), (1.0, 2)] {
            let c = pool(share);
            assert_eq!(c.wakees[0].in_flight, in_flight, "{c:?}");
            assert_eq!((c.wakers[0].word, c.wakees[0].word), (0, 0));
        }
    }

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
