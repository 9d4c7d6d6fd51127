//! The in-guest scheduling probe (guest side): loads `probe.bpf.c` with
//! libbpf-rs, tracks the scenario's processes by thread-group id, and reads
//! back per-task and per-group wait statistics and histograms.
//!
//! Knows the BPF program's maps and the clock it uses (CLOCK_MONOTONIC, as
//! `bpf_ktime_get_ns`); knows nothing about scenarios beyond group indices.

pub mod hist;

mod skel {
    #![allow(
        clippy::all,
        non_camel_case_types,
        non_snake_case,
        non_upper_case_globals,
        dead_code,
        unused_imports
    )]
    include!(concat!(env!("OUT_DIR"), "/probe_skel.rs"));
}

use std::mem::MaybeUninit;
use std::time::Duration;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, OpenObject};
use serde::{Deserialize, Serialize};

use hist::{Histogram, NR_BUCKETS};
use skel::{ProbeSkel, ProbeSkelBuilder};

/// Groups the probe keeps apart (the BPF side's MAX_GROUPS).
pub const MAX_GROUPS: usize = 32;
/// A slot of a task the probe does not track.
const UNTRACKED: u32 = u32::MAX;
/// A slot of a task outside the scenario, watched with `watch_all`.
const WATCHED: u32 = u32::MAX - 1;

/// CLOCK_MONOTONIC now, in ns: the probe's clock.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// How often one of the probe's programs ran and for how long in all, by
/// the kernel's BPF run-time statistics (counted only while some
/// `RunTimeStats` is held; each run then also reads the clock twice to time
/// itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgRuns {
    pub name: String,
    pub runs: u64,
    pub run_ns: u64,
}

/// The kernel's BPF run-time statistics, on while this lives
/// (`BPF_ENABLE_STATS`; the kernel turns them off when its descriptor is
/// closed, so a crashed agent leaves nothing on).
pub struct RunTimeStats {
    _fd: std::os::fd::OwnedFd,
}

impl RunTimeStats {
    pub fn enable() -> Result<RunTimeStats> {
        // SAFETY: a plain system call; a descriptor on success.
        let fd = unsafe {
            libbpf_rs::libbpf_sys::bpf_enable_stats(libbpf_rs::libbpf_sys::BPF_STATS_RUN_TIME)
        };
        if fd < 0 {
            return Err(std::io::Error::from_raw_os_error(-fd))
                .context("turning on the kernel's BPF run-time statistics (BPF_ENABLE_STATS)");
        }
        // SAFETY: a descriptor the call above opened, owned from here.
        Ok(RunTimeStats {
            _fd: unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) },
        })
    }
}

/// The loaded and attached probe. Detached when dropped.
pub struct Probe {
    skel: ProbeSkel<'static>,
}

/// A task that is runnable and not running, at the moment of a scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    pub tid: u32,
    pub tgid: u32,
    /// Its group; `None`: a task outside the scenario (`watch_all`).
    pub group: Option<u32>,
    /// The CPU whose runqueue it waits on (where it was woken or
    /// preempted).
    pub cpu: u32,
    /// How long it had been runnable inside the watch when scanned (see
    /// `set_watch`).
    pub waited_ns: u64,
    /// Of that, the part that is the scheduler's own: less the time its
    /// CPU ran a task of a higher class (RT, deadline, stop) meanwhile and
    /// the time it was waking (asleep in an idle state, told to run: see
    /// `GroupData::wait_waking_ns`).
    pub own_ns: u64,
}

/// The longest wait, inside the watch, of a task outside the scenario
/// (`watch_all`) that ended: kernel threads, the agent, anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtherWait {
    pub tid: u32,
    pub comm: String,
    /// The CPU whose runqueue it waited on.
    pub cpu: u32,
    pub runnable_ns: u64,
}

/// What the probe measured for one task still alive at the end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskData {
    pub tid: u32,
    pub tgid: u32,
    pub group: u32,
    pub run_ns: u64,
    pub run_ns_window: u64,
    /// Waits that ended inside the measurement window, and their total.
    pub nr_waits: u64,
    pub wait_ns: u64,
    /// Its longest runnable time inside the watch (see `set_watch`).
    pub max_runnable_ns: u64,
}

/// What the probe measured for one group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupData {
    /// Wakeup-to-run delays that ended inside the measurement window.
    pub run_delay: Histogram,
    pub nr_waits: u64,
    pub wait_ns: u64,
    /// Longest wait that ended in the measurement window.
    pub max_wait_ns: u64,
    /// Longest time one of its tasks stayed runnable without running
    /// inside the watch, a wait still open when read counted up to the
    /// watch's end (see `set_watch`); waits still open at a read before
    /// the end are in `Probe::waiting`, not here.
    #[serde(alias = "max_wait_all_ns")]
    pub max_runnable_ns: u64,
    /// Why its waits (those that ended in the window) lasted: the time
    /// the CPU each waited on ran a task of a higher class (RT, deadline,
    /// stop: the kernel allows that), the time it idled (the scheduler
    /// left the task queued beside an idle CPU), and the time it was
    /// waking: asleep in an idle state after the kernel told it to run (a
    /// reschedule IPI, a polling CPU's flag, or a wakeup onto it in an
    /// interrupt it took there) until it left that state, the platform's
    /// part (C-state exit on metal; a halted vCPU not yet run by the host
    /// in a VM); the rest of
    /// `wait_ns` it ran other fair or sched_ext tasks.
    #[serde(default)]
    pub wait_higher_ns: u64,
    #[serde(default)]
    pub wait_idle_ns: u64,
    #[serde(default)]
    pub wait_waking_ns: u64,
    /// The same waits less their higher-class and waking parts (the
    /// scheduler's own): histogram, longest in the window, and longest
    /// runnable time inside the watch.
    #[serde(default)]
    pub run_delay_own: Histogram,
    #[serde(default)]
    pub max_own_ns: u64,
    #[serde(default)]
    pub max_runnable_own_ns: u64,
    /// CPU time of its tasks, exited ones included: whole run, and the part
    /// inside the measurement window.
    pub run_ns: u64,
    pub run_ns_window: u64,
    pub nr_tasks: u64,
}

/// Everything the probe has, read at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub groups: Vec<GroupData>,
    pub tasks: Vec<TaskData>,
    pub nr_events: u64,
    /// Task entries the BPF side could not create (a full map): if not 0,
    /// the measurements are incomplete.
    pub nr_dropped: u64,
}

impl Probe {
    /// Opens, loads and attaches the probe's programs.
    pub fn load() -> Result<Probe> {
        // The skeleton borrows its object's storage for its whole life;
        // the probe lives as long as the guest agent, so the few bytes are
        // leaked rather than tied into a self-referential struct.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let open = ProbeSkelBuilder::default()
            .open(storage)
            .context("opening the probe's BPF object")?;
        let (loaded, log) = crate::bpflog::capture(|| open.load());
        let mut skel = loaded.with_context(|| {
            format!(
                "loading the probe's BPF programs; libbpf said:\n  {}",
                crate::bpflog::tail(&log, 20).join("\n  ")
            )
        })?;
        skel.attach()
            .context("attaching the probe to the sched_wakeup/sched_switch tracepoints")?;
        Ok(Probe { skel })
    }

    /// Detaches the programs: they stay loaded and the maps keep their
    /// data, but none of the probe's code runs until `reattach`
    /// (`bench probe`'s rounds without it).
    pub fn detach(&mut self) {
        self.skel.links = Default::default();
    }

    /// Attaches the programs again after `detach`, every one of them, each
    /// by itself: the skeleton's own `attach` would take the links that
    /// `detach` dropped for live ones (libbpf skips a program whose link
    /// pointer is set) and the agent died of the use after free.
    pub fn reattach(&mut self) -> Result<()> {
        // What each CPU ran is unknown since the detach (a CPU detached
        // asleep may run tasks now): every record waits for its CPU's
        // next switch (since = 0), and no kick counts before it.
        for r in self.bss_mut().cpu_ran.iter_mut() {
            // SAFETY: writes to the shared mapping while no program of
            // the probe is attached.
            unsafe { std::ptr::write_volatile(&mut r.since, 0) };
        }
        let progs = &self.skel.progs;
        let links = &mut self.skel.links;
        links.on_switch = Some(progs.on_switch.attach().context("attaching on_switch")?);
        links.on_wakeup = Some(progs.on_wakeup.attach().context("attaching on_wakeup")?);
        links.on_wakeup_new = Some(
            progs
                .on_wakeup_new
                .attach()
                .context("attaching on_wakeup_new")?,
        );
        links.on_migrate = Some(progs.on_migrate.attach().context("attaching on_migrate")?);
        links.on_ipi_send_cpu = Some(
            progs
                .on_ipi_send_cpu
                .attach()
                .context("attaching on_ipi_send_cpu")?,
        );
        links.on_wake_idle_without_ipi = Some(
            progs
                .on_wake_idle_without_ipi
                .attach()
                .context("attaching on_wake_idle_without_ipi")?,
        );
        links.on_cpu_idle = Some(
            progs
                .on_cpu_idle
                .attach()
                .context("attaching on_cpu_idle")?,
        );
        Ok(())
    }

    /// Each program's runs and run time so far (see `ProgRuns`), in the
    /// object's order.
    pub fn prog_runs(&self) -> Result<Vec<ProgRuns>> {
        use std::os::fd::{AsFd, AsRawFd};
        self.skel
            .object()
            .progs()
            .map(|prog| {
                let name = prog.name().to_string_lossy().into_owned();
                let mut info = libbpf_rs::libbpf_sys::bpf_prog_info::default();
                let mut len = std::mem::size_of_val(&info) as u32;
                // SAFETY: a zeroed bpf_prog_info and its size; no array of it
                // asks for more.
                let ret = unsafe {
                    libbpf_rs::libbpf_sys::bpf_obj_get_info_by_fd(
                        prog.as_fd().as_raw_fd(),
                        (&mut info as *mut libbpf_rs::libbpf_sys::bpf_prog_info).cast(),
                        &mut len,
                    )
                };
                if ret != 0 {
                    return Err(std::io::Error::from_raw_os_error(-ret))
                        .with_context(|| format!("reading the run statistics of {name}"));
                }
                Ok(ProgRuns {
                    name,
                    runs: info.run_cnt,
                    run_ns: info.run_time_ns,
                })
            })
            .collect()
    }

    fn bss(&self) -> &skel::types::bss {
        self.skel
            .maps
            .bss_data
            .as_deref()
            .expect("the probe's .bss is mmapped")
    }

    fn bss_mut(&mut self) -> &mut skel::types::bss {
        self.skel
            .maps
            .bss_data
            .as_deref_mut()
            .expect("the probe's .bss is mmapped")
    }

    /// Tracks process `tgid` (and its threads and children) as `group`.
    ///
    /// Its threads that the BPF side has seen already (the fork that made
    /// the process, threads it started before this call) have their slots
    /// marked untracked or watched: those are forgotten after the map is
    /// updated, so that their next event looks the process up again and
    /// finds it. Without this the group's main thread was never tracked.
    pub fn track(&mut self, tgid: u32, group: u32) -> Result<()> {
        self.skel
            .maps
            .tracked
            .update(&tgid.to_ne_bytes(), &group.to_ne_bytes(), MapFlags::ANY)
            .with_context(|| format!("tracking process {tgid}"))?;
        let bss = self.bss_mut();
        for tid in tids_of(tgid) {
            let Some(slot) = bss.slots.get_mut(tid as usize) else {
                continue;
            };
            // SAFETY: reads and a store of the shared mapping. The BPF side
            // may write the slot at the same moment: it then either sees
            // tid 0 and looks the task up (tracked), or has just cached it
            // untracked before the map held it, which this store undoes.
            unsafe {
                let t = std::ptr::read_volatile(slot);
                if t.tid == tid && (t.group == UNTRACKED || t.group == WATCHED) {
                    std::ptr::write_volatile(&mut slot.tid, 0);
                }
            }
        }
        Ok(())
    }

    /// Sets the watch, CLOCK_MONOTONIC ns: how long a task stayed runnable
    /// counts only inside `[start, end)`; a wait open at `end` counts up to
    /// `end` however late it is read. `end` is `u64::MAX` while a pass
    /// runs and its stop once it stopped.
    pub fn set_watch(&mut self, start: u64, end: u64) {
        let bss = self.bss_mut();
        // SAFETY: plain stores into the shared mapping.
        unsafe {
            std::ptr::write_volatile(&mut bss.pass_end, end);
            std::ptr::write_volatile(&mut bss.pass_start, start);
        }
    }

    /// Watches every task of the guest (kernel threads included), not only
    /// the tracked ones, from each task's next event on.
    pub fn watch_all(&mut self, on: bool) {
        let bss = self.bss_mut();
        // SAFETY: a plain store into the shared mapping.
        unsafe { std::ptr::write_volatile(&mut bss.watch_all, on as u32) };
    }

    /// The longest wait inside the watch of a task outside the scenario
    /// that ended, over every CPU (`watch_all`).
    pub fn other_worst(&self) -> Option<OtherWait> {
        let bss = self.bss();
        bss.other_worst
            .iter()
            // SAFETY: reads of the shared mapping; a torn read shows a
            // neighbour's comm at worst.
            .map(|w| unsafe { std::ptr::read_volatile(w) })
            .filter(|w| w.runnable_ns > 0)
            .max_by_key(|w| w.runnable_ns)
            .map(|w| OtherWait {
                tid: w.tid,
                comm: comm_str(&w.comm),
                cpu: w.cpu,
                runnable_ns: w.runnable_ns,
            })
    }

    /// Waits that end in `[start, end)` (CLOCK_MONOTONIC ns) are counted in
    /// the histograms; before the first call, none are.
    pub fn set_window(&mut self, start: u64, end: u64) {
        let bss = self.bss_mut();
        // Plain stores into the shared mapping; the BPF side reads them on
        // its next event.
        unsafe {
            std::ptr::write_volatile(&mut bss.window_end, end);
            std::ptr::write_volatile(&mut bss.window_start, start);
        }
    }

    /// Starts watching the waits that end from `start` on (CLOCK_MONOTONIC
    /// ns), for a scheduler swap.
    pub fn spike_begin(&mut self, start: u64) {
        let bss = self.bss_mut();
        // SAFETY: plain stores into the shared mapping.
        unsafe {
            std::ptr::write_volatile(&mut bss.spike_start, u64::MAX);
            for m in bss.spike_max.iter_mut() {
                std::ptr::write_volatile(m, 0);
            }
            std::ptr::write_volatile(&mut bss.spike_end, u64::MAX);
            std::ptr::write_volatile(&mut bss.spike_start, start);
        }
    }

    /// Stops watching, and returns the longest wait of any group that ended
    /// since `spike_begin`.
    pub fn spike_end(&mut self) -> u64 {
        let bss = self.bss_mut();
        // SAFETY: reads and stores of the shared mapping.
        unsafe {
            std::ptr::write_volatile(&mut bss.spike_end, 0);
            bss.spike_max
                .iter()
                .map(|m| std::ptr::read_volatile(m))
                .max()
                .unwrap_or(0)
        }
    }

    /// Forgets every tracked process, task and measurement: the state of a
    /// freshly loaded probe, for the next pass of a scenario.
    pub fn reset(&mut self) {
        // First, so that no slot is made WATCHED while the slots are
        // cleared (a stale one would show a wait from long ago).
        self.watch_all(false);
        self.set_watch(0, 0);
        let map = &self.skel.maps.tracked;
        let keys: Vec<Vec<u8>> = map.keys().collect();
        for k in keys {
            let _ = map.delete(&k);
        }
        self.set_window(0, 0);
        let bss = self.bss_mut();
        // SAFETY: plain stores into the shared mapping; the BPF side only
        // adds to these. A task with an event meanwhile finds its slot
        // cleared or not: either way it starts over untracked.
        unsafe {
            for t in bss.slots.iter_mut() {
                std::ptr::write_volatile(t, std::mem::zeroed());
            }
            for g in bss.groups.iter_mut() {
                std::ptr::write_volatile(g, std::mem::zeroed());
            }
            for h in bss.hist.iter_mut() {
                std::ptr::write_volatile(h, 0);
            }
            for h in bss.hist_own.iter_mut() {
                std::ptr::write_volatile(h, 0);
            }
            for w in bss.other_worst.iter_mut() {
                std::ptr::write_volatile(w, std::mem::zeroed());
            }
            std::ptr::write_volatile(&mut bss.nr_dropped, 0);
        }
    }

    /// The slot of a tracked or watched, live task.
    fn slot(&self, tid: u32) -> Option<skel::types::task_stat> {
        let bss = self.bss();
        let t = bss.slots.get(tid as usize)?;
        // SAFETY: a read of the shared mapping; a torn read of a slot being
        // written shows a wait a moment early or late, never a wrong task.
        let t = unsafe { std::ptr::read_volatile(t) };
        (t.tid == tid && t.group != UNTRACKED && t.exited == 0).then_some(t)
    }

    /// How long CPU `cpu` has spent on `what` up to `now`, by the BPF
    /// side's per-CPU record (the same sums the waits' marks are taken
    /// from), the current stretch included (an idle one split at its
    /// kick). Keep in step with ran_ns() in probe.bpf.c.
    fn ran_ns(&self, cpu: u32, what: Ran, now: u64) -> u64 {
        let Some(r) = self.bss().cpu_ran.get(cpu as usize) else {
            return 0;
        };
        // SAFETY: a read of the shared mapping; its own CPU writes it
        // (other CPUs only set kicked_at).
        let r = unsafe { std::ptr::read_volatile(r) };
        let stretch = Stretch {
            since: r.since,
            what: r.what,
            kicked_at: r.kicked_at,
        };
        r.ns[what as usize] + stretch.part(what, now)
    }

    /// The part of `[since, now)` inside the watch. Keep in step with
    /// in_watch() in probe.bpf.c.
    fn in_watch(&self, since: u64, now: u64) -> u64 {
        let bss = self.bss();
        // SAFETY: reads of the shared mapping.
        let (start, end) = unsafe {
            (
                std::ptr::read_volatile(&bss.pass_start),
                std::ptr::read_volatile(&bss.pass_end),
            )
        };
        now.min(end).saturating_sub(since.max(start))
    }

    /// Every tracked task, live or exited, whose sums are in its slot
    /// (reads the whole slot array: for the end of a pass, not for a scan).
    fn task_stats(&self) -> Vec<(u32, skel::types::task_stat)> {
        self.slots_where(|t| (t.group as usize) < MAX_GROUPS)
    }

    /// Every slot that holds a task (its own pid's), and of which `keep`
    /// holds: a scan of the whole array, for the end of a pass.
    fn slots_where(
        &self,
        keep: impl Fn(&skel::types::task_stat) -> bool,
    ) -> Vec<(u32, skel::types::task_stat)> {
        self.bss()
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                // SAFETY: a read of the shared mapping.
                let t = unsafe { std::ptr::read_volatile(t) };
                (t.tid == i as u32 && t.tid != 0 && keep(&t)).then_some((t.tid, t))
            })
            .collect()
    }

    /// Which of `tids` are runnable and not running at `now`
    /// (CLOCK_MONOTONIC ns), and for how long inside the watch.
    pub fn waiting(&self, now: u64, tids: &[u32]) -> Vec<Waiting> {
        tids.iter()
            .filter_map(|tid| self.slot(*tid))
            .filter(|t| t.runnable_since != 0 && t.runnable_since <= now)
            .map(|t| {
                let waited_ns = self.in_watch(t.runnable_since, now);
                let higher = ran_since(self.ran_ns(t.cpu, Ran::Higher, now), t.higher_mark);
                let waking = ran_since(self.ran_ns(t.cpu, Ran::Waking, now), t.waking_mark);
                Waiting {
                    tid: t.tid,
                    tgid: t.tgid,
                    group: ((t.group as usize) < MAX_GROUPS).then_some(t.group),
                    cpu: t.cpu,
                    waited_ns,
                    own_ns: waited_ns.saturating_sub(higher + waking),
                }
            })
            .filter(|w| w.waited_ns > 0)
            .collect()
    }

    /// CPU time so far per group (its exited tasks' plus the live ones
    /// among `tids`), for a timeline; cheap enough to call several times a
    /// second. A task exiting between the two reads shows as a blip.
    pub fn run_ns_by_group(&self, nr_groups: usize, tids: &[u32], now: u64) -> Vec<u64> {
        let bss = self.bss();
        let mut out: Vec<u64> = (0..nr_groups.min(MAX_GROUPS))
            .map(|g| unsafe { std::ptr::read_volatile(&bss.groups[g]) }.exited_run_ns)
            .collect();
        for t in tids.iter().filter_map(|tid| self.slot(*tid)) {
            if let Some(v) = out.get_mut(t.group as usize) {
                // A task running now has run since running_since too.
                let running = if t.running_since != 0 && t.running_since <= now {
                    now - t.running_since
                } else {
                    0
                };
                *v += t.run_ns + running;
            }
        }
        out
    }

    /// Every tracked task waiting at `now` (a full scan, for the end of a
    /// pass), watched ones outside the scenario included.
    pub fn all_waiting(&self, now: u64) -> Vec<Waiting> {
        let tids: Vec<u32> = self
            .slots_where(|t| t.group != UNTRACKED && t.runnable_since != 0)
            .into_iter()
            .map(|(tid, _)| tid)
            .collect();
        self.waiting(now, &tids)
    }

    /// Everything measured so far, for `nr_groups` groups: the sums of
    /// every task's slot, live or exited (a task is counted once whenever
    /// it exits), plus those folded into the group by slots taken over.
    pub fn snapshot(&self, nr_groups: usize) -> Snapshot {
        let bss = self.bss();
        let live = self.task_stats();
        let mut nr_events = 0;
        let groups = (0..nr_groups.min(MAX_GROUPS))
            .map(|g| {
                // SAFETY: reads of the shared mapping; the BPF side only
                // adds to these.
                let gs = unsafe { std::ptr::read_volatile(&bss.groups[g]) };
                let counts: Vec<u64> = (0..NR_BUCKETS)
                    .map(|b| unsafe { std::ptr::read_volatile(&bss.hist[g * NR_BUCKETS + b]) })
                    .collect();
                let own: Vec<u64> = (0..NR_BUCKETS)
                    .map(|b| unsafe { std::ptr::read_volatile(&bss.hist_own[g * NR_BUCKETS + b]) })
                    .collect();
                let mut d = GroupData {
                    run_delay: Histogram::from_counts(&counts),
                    nr_waits: gs.nr_waits,
                    wait_ns: gs.wait_ns,
                    max_wait_ns: gs.max_wait,
                    max_runnable_ns: gs.max_runnable,
                    wait_higher_ns: gs.wait_higher_ns,
                    wait_idle_ns: gs.wait_idle_ns,
                    wait_waking_ns: gs.wait_waking_ns,
                    run_delay_own: Histogram::from_counts(&own),
                    max_own_ns: gs.max_own,
                    max_runnable_own_ns: gs.max_runnable_own,
                    run_ns: gs.run_ns,
                    run_ns_window: gs.run_ns_window,
                    nr_tasks: gs.nr_tasks,
                };
                nr_events += gs.nr_events;
                for (_, t) in live.iter().filter(|(_, t)| t.group as usize == g) {
                    d.nr_waits += t.nr_waits;
                    d.wait_ns += t.wait_ns;
                    d.max_wait_ns = d.max_wait_ns.max(t.max_wait_window);
                    d.max_runnable_ns = d.max_runnable_ns.max(t.max_runnable);
                    d.wait_higher_ns += t.wait_higher_ns;
                    d.wait_idle_ns += t.wait_idle_ns;
                    d.wait_waking_ns += t.wait_waking_ns;
                    d.max_own_ns = d.max_own_ns.max(t.max_own);
                    d.max_runnable_own_ns = d.max_runnable_own_ns.max(t.max_runnable_own);
                    d.run_ns += t.run_ns;
                    d.run_ns_window += t.run_ns_window;
                    nr_events += t.nr_events;
                }
                d
            })
            .collect();
        let tasks = live
            .into_iter()
            .filter(|(_, t)| t.exited == 0)
            .map(|(tid, t)| TaskData {
                tid,
                tgid: t.tgid,
                group: t.group,
                run_ns: t.run_ns,
                run_ns_window: t.run_ns_window,
                nr_waits: t.nr_waits,
                wait_ns: t.wait_ns,
                max_runnable_ns: t.max_runnable,
            })
            .collect();
        Snapshot {
            groups,
            tasks,
            nr_events,
            nr_dropped: unsafe { std::ptr::read_volatile(&bss.nr_dropped) },
        }
    }
}

/// The thread ids of process `pid` (none if it is gone), from /proc.
pub fn tids_of(pid: u32) -> Vec<u32> {
    numbered_entries(&format!("/proc/{pid}/task"))
}

/// Every process id of the guest, from one listing of /proc (a kernel
/// thread is a process of one thread: its pid is its tid).
pub fn pids_of_guest() -> Vec<u32> {
    numbered_entries("/proc")
}

/// The entries of `dir` whose names are numbers (none if it is gone).
fn numbered_entries(dir: &str) -> Vec<u32> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A kernel comm (NUL-padded) as text.
fn comm_str(raw: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = raw
        .iter()
        .map(|c| *c as u8)
        .take_while(|c| *c != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A duration in ns as a `Duration`.
pub fn ns(v: u64) -> Duration {
    Duration::from_nanos(v)
}

/// What a CPU spends its time on: the indices of cpu_ran.ns in
/// probe.bpf.c (RAN_*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ran {
    Idle = 0,
    /// A task of a higher class than fair and sched_ext (RT, deadline,
    /// stop).
    Higher = 1,
    /// Asleep in an idle state after it was told to run, until it left
    /// that state (the platform's).
    Waking = 3,
}

/// A CPU's current stretch: since its last switch or its exit from an idle
/// state after a kick (`since`, 0 if none), running `what` (a RAN_* index,
/// never waking), and when, asleep in an idle state, it was told to run
/// (`kicked_at`; its other values, 0 for asleep and not told yet and
/// u64::MAX for awake, and any time outside `since..=now`, count as no
/// kick).
#[derive(Clone, Copy)]
struct Stretch {
    since: u64,
    what: u32,
    kicked_at: u64,
}

impl Stretch {
    /// How much of the stretch, up to `now`, was spent on `what`.
    fn part(&self, what: Ran, now: u64) -> u64 {
        if self.since == 0 || self.since > now {
            return 0;
        }
        let kick = Some(self.kicked_at).filter(|k| (self.since..=now).contains(k));
        let idle = self.what == Ran::Idle as u32;
        match what {
            Ran::Idle if idle => kick.unwrap_or(now) - self.since,
            Ran::Waking if idle => kick.map_or(0, |k| now - k),
            Ran::Waking => 0,
            w if self.what == w as u32 => now - self.since,
            _ => 0,
        }
    }
}

/// What a CPU ran of one kind since a wait's mark, in ns: `sum` (its
/// running sum now) less `mark`, compared as signed and never negative, as
/// ran_since() in probe.bpf.c. After a migration the mark is the new CPU's
/// sum less what the old CPU ran of the wait (on_migrate), so it lies above
/// the sum (modulo 2^64) when the new CPU ran less than that in all; a mark
/// from a stale read of another CPU's record may exceed the sum too.
fn ran_since(sum: u64, mark: u64) -> u64 {
    (sum.wrapping_sub(mark) as i64).max(0) as u64
}

#[cfg(test)]
mod ran_since_tests {
    use super::{ran_since, Ran, Stretch};

    #[test]
    fn an_idle_stretch_is_idle_up_to_its_kick_and_waking_after() {
        let kicked = Stretch {
            since: 1_000,
            what: Ran::Idle as u32,
            kicked_at: 1_300,
        };
        assert_eq!(kicked.part(Ran::Idle, 2_000), 300);
        assert_eq!(kicked.part(Ran::Waking, 2_000), 700);
        assert_eq!(kicked.part(Ran::Higher, 2_000), 0);
        // Not kicked (asleep, or awake), or a kick of an earlier stretch:
        // idle throughout.
        for kicked_at in [0, u64::MAX, 900] {
            let s = Stretch {
                kicked_at,
                ..kicked
            };
            assert_eq!(s.part(Ran::Idle, 2_000), 1_000);
            assert_eq!(s.part(Ran::Waking, 2_000), 0);
        }
        // A stretch of a higher class: neither idle nor waking.
        let rt = Stretch {
            what: Ran::Higher as u32,
            ..kicked
        };
        assert_eq!(rt.part(Ran::Higher, 2_000), 1_000);
        assert_eq!(rt.part(Ran::Waking, 2_000), 0);
        assert_eq!(rt.part(Ran::Idle, 2_000), 0);
    }

    #[test]
    fn a_mark_moved_above_the_new_cpus_sum_still_counts_the_old_cpus_part() {
        // 300 ns behind a higher class on the old CPU; the new CPU had run
        // 100 ns of it in all when the task moved, then 50 ns more.
        let mark = 100u64.wrapping_sub(300);
        assert_eq!(ran_since(150, mark), 350);
        assert_eq!(ran_since(100, mark), 300);
    }

    #[test]
    fn a_stale_mark_above_the_sum_counts_nothing() {
        assert_eq!(ran_since(1_000, 1_200), 0);
        assert_eq!(ran_since(1_000, 400), 600);
    }
}
