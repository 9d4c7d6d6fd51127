//! Workload scenarios (`scenarios/*.yaml`): what runs in the guest, for how
//! long, and which checks its result must pass.
//!
//! Types, parsing, validation and the content hash; the format is
//! documented in `scenarios/README.md` and as a JSON Schema generated from
//! these types (`scx-harness schema`). Knows nothing about VMs, schedulers
//! or how the work is done (`workload`) and measured (`probe`).

pub mod timeline;
pub mod validate;

pub use timeline::{Action, CgroupLevel, CpuMax, Knobs, Op};

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::datafile::{parse_yaml, read_text};
use crate::kernel::cache::sha256_hex;
use crate::units::duration_str;

/// Groups a scenario may have (the probe keeps a histogram per group).
pub const MAX_GROUPS: usize = 32;
/// Threads of all groups together: beyond this a 2-vCPU guest measures
/// the harness, not the scheduler, and memory stays bounded.
pub const MAX_THREADS: u32 = 1024;
/// Longest run the harness accepts.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);

const HINT: &str = "see scenarios/README.md (or `scx-harness schema`) for the scenario format";

/// A workload scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Unique name, used in test and report names (letters, digits, '-', '_').
    pub name: String,
    /// The behaviour this scenario guards, in a sentence or two.
    pub description: String,
    /// The guest's shape. Default: 2 vCPUs, 2G.
    #[serde(default)]
    pub vm: VmShape,
    /// How long the workload runs, warm-up included (e.g. "10s").
    #[serde(with = "duration_str")]
    #[schemars(with = "DurationText")]
    pub duration: Duration,
    /// Time at the start whose measurements are not counted (run-delay
    /// percentiles, CPU share, throughput). Stalls count from the start.
    /// Default: "1s".
    #[serde(default = "default_warmup", with = "duration_str")]
    #[schemars(with = "DurationText")]
    pub warmup: Duration,
    /// Seed of every random choice (sleep lengths); the same seed gives the
    /// same workload mix and timeline. Default: 0.
    #[serde(default)]
    pub seed: u64,
    /// The task groups (at least one).
    pub groups: Vec<Group>,
    /// Scheduler changes while the workload runs: at each time, the cell's
    /// scheduler (or the one running) is detached and `to` attached, without
    /// stopping the tasks. Default: none.
    #[serde(default)]
    pub swaps: Vec<Swap>,
    /// Changes made while the tasks run (affinity, nice, policy, cgroup
    /// moves and settings, cgroups made and removed, CPU hotplug), each at
    /// its time and optionally repeated; driven by the agent's real-time
    /// thread, so the workload cannot delay them. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<Op>,
    /// Kernel settings for the run (sysctl name: value), restored after it.
    /// Default: none.
    #[serde(default, skip_serializing_if = "Knobs::is_empty")]
    pub knobs: Knobs,
    /// Settings of cgroup levels above or beside the groups' own (a slice
    /// above its scopes). Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cgroups: Vec<CgroupLevel>,
    /// What the result must satisfy. Default: none (measure only).
    #[serde(default, with = "serde_yaml::with::singleton_map_recursive")]
    #[schemars(with = "Vec<Check>")]
    pub checks: Vec<Check>,
    /// What `scx-harness record` measured of each group on the recorded
    /// machine: the reference `scx-harness replay-check` scores a replay
    /// against. Runs ignore it. Default: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recorded: Vec<Recorded>,
}

/// One group as it was recorded (`scx-harness record`), over the
/// recording's length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Recorded {
    /// The scenario group it became.
    pub group: String,
    /// Threads seen.
    pub threads: u32,
    /// CPU time over the recording's length, in CPUs (1.0: one CPU kept
    /// busy).
    pub cpus_busy: f64,
    /// Bursts (a wakeup to the next block) per second, all threads.
    pub bursts_per_s: f64,
    /// Preemptions (left the CPU still runnable) and migrations per
    /// second, all threads.
    pub preemptions_per_s: f64,
    pub migrations_per_s: f64,
    /// Median and 90th percentile of the wakeup-to-run delay.
    #[serde(with = "duration_str")]
    #[schemars(with = "DurationText")]
    pub delay_p50: Duration,
    #[serde(with = "duration_str")]
    #[schemars(with = "DurationText")]
    pub delay_p90: Duration,
    /// Who woke it, as shares of its wakeups, from the thread running
    /// where the wakeup was made (sched_waking): a group's name (possibly
    /// one left out of the scenario), `outside` (a thread not recorded),
    /// `interrupt` (a wakeup made in a hard interrupt, a timer's expiry or
    /// a softirq other than networking's: a timer, a device, an I/O
    /// completion; record.bpf.c keeps the mark from the interrupt
    /// tracepoints) or `idle` (the idle task). Largest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub woken_by: Vec<WokenBy>,
}

/// A share of a group's wakeups and who made them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WokenBy {
    pub by: String,
    /// 0 to 1.
    pub share: f64,
}

/// A share of a `replay` group's sleeps that a task of another group
/// ends with a wakeup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Coupling {
    /// The waking group: a `replay` group of the scenario (the group
    /// itself for wakeups among its own tasks).
    pub group: String,
    /// The share of the sleeps it ends, over 0 and at most 1; a group's
    /// shares together at most 1.
    pub share: f64,
}

/// A duration as text: a number and a unit (us, ms, s, m, h), e.g. "250ms".
#[derive(JsonSchema)]
#[schemars(
    transparent,
    extend("pattern" = r"^[0-9]+(\.[0-9]+)?\s*(us|ms|s|m|min|h)?$")
)]
#[allow(dead_code)]
pub(crate) struct DurationText(String);

fn default_warmup() -> Duration {
    Duration::from_secs(1)
}

/// The guest's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmShape {
    /// vCPUs. Default: 2.
    #[serde(default = "default_cpus")]
    pub cpus: u32,
    /// Memory as QEMU reads it ("512M", "2G"). Default: "2G".
    #[serde(default = "default_memory")]
    pub memory: String,
    /// How the vCPUs are laid out. Default: one socket of `cpus` cores,
    /// one NUMA node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topology: Option<Topology>,
}

/// A guest CPU topology (QEMU `-smp`): `sockets` x `cores` x `threads`
/// = `cpus`. SMT siblings with `threads: 2`; several last-level caches with
/// `sockets` above 1 (QEMU gives each socket its own L3); with `numa:
/// true`, a NUMA node per socket, the memory split evenly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Default: 1.
    #[serde(default = "one")]
    pub sockets: u32,
    /// Cores per socket.
    pub cores: u32,
    /// Hardware threads per core. Default: 1.
    #[serde(default = "one")]
    pub threads: u32,
    /// A NUMA node per socket. Default: false.
    #[serde(default)]
    pub numa: bool,
}

impl Topology {
    pub fn cpus(&self) -> u32 {
        self.sockets * self.cores * self.threads
    }
}

fn default_cpus() -> u32 {
    2
}

fn default_memory() -> String {
    "2G".into()
}

impl Default for VmShape {
    fn default() -> Self {
        VmShape {
            cpus: default_cpus(),
            memory: default_memory(),
            topology: None,
        }
    }
}

/// A group of tasks doing the same work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Unique within the scenario; checks refer to it.
    pub name: String,
    /// How many tasks (threads, or instances of a command). Default: 1.
    #[serde(default = "one")]
    pub threads: u32,
    /// What each task does.
    pub work: Work,
    /// Nice level of every task, -20 to 19. Default: 0.
    #[serde(default)]
    pub nice: i32,
    /// Scheduling policy of every task. Default: `other`.
    #[serde(default, skip_serializing_if = "Policy::is_other")]
    pub policy: Policy,
    /// Real-time priority, 1 to 97, for `fifo` and `rr` (required there,
    /// refused elsewhere; 98 and 99 are the harness's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    /// The group's tasks as threads of one process (default) or as
    /// separate processes, one per task.
    #[serde(default, skip_serializing_if = "Tasks::is_threads")]
    pub tasks: Tasks,
    /// A cgroup v2 the group's tasks join. Default: none (the tasks stay in
    /// the harness's cgroup).
    #[serde(default)]
    pub cgroup: Option<CgroupSpec>,
    /// CPUs the tasks may run on (0-based, below `vm.cpus`). Default: all.
    #[serde(default)]
    pub cpus: Option<Vec<u32>>,
    /// The tasks' comm (what `ps` and the kernel show), at most 15 bytes.
    /// Default: the group name, cut to 15 bytes.
    #[serde(default)]
    pub comm: Option<String>,
    /// When the group starts, from the start of the run. Default: "0s".
    #[serde(default, with = "duration_str::option")]
    #[schemars(with = "Option<DurationText>")]
    pub start: Option<Duration>,
    /// When the group stops. Default: the end of the run.
    #[serde(default, with = "duration_str::option")]
    #[schemars(with = "Option<DurationText>")]
    pub stop: Option<Duration>,
}

fn one() -> u32 {
    1
}

/// A scheduling policy (sched(7)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// SCHED_OTHER: the fair class, or a switch-all sched_ext scheduler.
    #[default]
    Other,
    /// SCHED_BATCH: like other, assumed CPU-bound (no wakeup preemption in
    /// the fair class).
    Batch,
    /// SCHED_IDLE: runs only when nothing else of the fair class wants the
    /// CPU (a weight below nice 19's); a sched_ext scheduler sees it as a
    /// weight of 1 (kernel/sched/ext.c).
    Idle,
    /// SCHED_FIFO with a `priority`: the real-time class, which no
    /// sched_ext scheduler schedules.
    Fifo,
    /// SCHED_RR with a `priority`: SCHED_FIFO with a time slice among equals.
    Rr,
    /// SCHED_EXT (policy 7, 6.12 and later): what a scheduler in partial
    /// mode schedules; the fair class runs it while none is attached.
    Ext,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Other => "other",
            Policy::Batch => "batch",
            Policy::Idle => "idle",
            Policy::Fifo => "fifo",
            Policy::Rr => "rr",
            Policy::Ext => "ext",
        }
    }

    pub fn is_other(&self) -> bool {
        *self == Policy::Other
    }

    /// True for the real-time policies, which take a priority.
    pub fn is_realtime(self) -> bool {
        matches!(self, Policy::Fifo | Policy::Rr)
    }

    /// Whether a task of this policy runs on an attached sched_ext
    /// scheduler: SCHED_EXT always; the fair policies (other, batch, idle)
    /// unless it switches only SCHED_EXT tasks (`partial`); the real-time
    /// ones never (kernel/sched/ext.c `task_should_scx`).
    pub fn on_sched_ext(self, partial: bool) -> bool {
        match self {
            Policy::Ext => true,
            Policy::Other | Policy::Batch | Policy::Idle => !partial,
            Policy::Fifo | Policy::Rr => false,
        }
    }
}

/// How a group's tasks are made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Tasks {
    /// Threads of one process (one thread group, one mm).
    #[default]
    Threads,
    /// One process per task (as builds, browsers and hackbench's process
    /// mode run): each its own thread group and mm.
    Processes,
}

impl Tasks {
    pub fn is_threads(&self) -> bool {
        *self == Tasks::Threads
    }
}

impl Group {
    /// A group of `threads` tasks doing `work`, every other field at its
    /// default.
    pub fn new(name: &str, threads: u32, work: Work) -> Group {
        Group {
            name: name.into(),
            threads,
            work,
            nice: 0,
            policy: Policy::Other,
            priority: None,
            tasks: Tasks::Threads,
            cgroup: None,
            cpus: None,
            comm: None,
            start: None,
            stop: None,
        }
    }

    /// The real-time priority its policy runs at (0 for the others).
    pub fn priority(&self) -> u32 {
        self.priority.unwrap_or(0)
    }

    /// The comm its tasks run under.
    pub fn comm(&self) -> String {
        match &self.comm {
            Some(c) => c.clone(),
            None => truncate_bytes(&self.name, 15),
        }
    }

    pub fn start(&self) -> Duration {
        self.start.unwrap_or(Duration::ZERO)
    }

    pub fn stop(&self, run: Duration) -> Duration {
        self.stop.unwrap_or(run)
    }
}

fn truncate_bytes(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// A scheduler change during the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Swap {
    /// When, from the start of the run.
    #[serde(with = "duration_str")]
    #[schemars(with = "DurationText")]
    pub at: Duration,
    /// A scheduler from the registry (`default`: the fair class), or
    /// `cell`: the cell's own scheduler again.
    pub to: String,
}

/// A cgroup v2 for a group, under the harness's own cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CgroupSpec {
    /// Its name, or a path of nested cgroups as systemd lays them out
    /// (`app.slice/web.scope`: every level is made, with the cpu
    /// controller enabled in each parent); groups naming the same cgroup
    /// share it.
    pub name: String,
    /// cpu.weight, 1 to 10000. Default: 100.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// cpu.max: a CPU bandwidth limit. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<CpuMax>,
}

fn default_weight() -> u32 {
    100
}

/// What a task does; each loop round is one counted iteration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Work {
    /// Burns CPU without sleeping (a CPU hog).
    Spin,
    /// Runs for `run` every `period`, sleeping in between (rt-app style).
    Periodic {
        #[serde(with = "duration_str")]
        #[schemars(with = "DurationText")]
        run: Duration,
        #[serde(with = "duration_str")]
        #[schemars(with = "DurationText")]
        period: Duration,
    },
    /// Pairs of tasks waking each other through a pipe, one byte at a time
    /// (threads must be even); each burns `run` of its own CPU time before
    /// it passes the byte back (a request and its answer).
    Pingpong {
        /// CPU time per turn. Default: 0 (the byte passed back at once: a
        /// turn is microseconds of system calls).
        #[serde(
            with = "duration_str",
            default,
            skip_serializing_if = "Duration::is_zero"
        )]
        #[schemars(with = "DurationText")]
        run: Duration,
    },
    /// A token passed around a ring of all the group's tasks through pipes
    /// (at least 2 threads).
    WakeChain,
    /// Forks a child that exits at once, and waits for it, again and again
    /// (process churn).
    ForkExit,
    /// Calls sched_yield() in a loop.
    Yield,
    /// Mostly idle: runs `run`, then sleeps a random time between
    /// `min_sleep` and `max_sleep` drawn from the scenario's seed.
    Sleepy {
        #[serde(with = "duration_str")]
        #[schemars(with = "DurationText")]
        run: Duration,
        #[serde(with = "duration_str")]
        #[schemars(with = "DurationText")]
        min_sleep: Duration,
        #[serde(with = "duration_str")]
        #[schemars(with = "DurationText")]
        max_sleep: Duration,
    },
    /// One waker waking many, as schbench does: the group's tasks form
    /// rings of one message task and `workers` worker tasks (`threads`
    /// a multiple of `workers + 1`). Every `interval` the message task
    /// wakes all its workers at once (a futex wake-all: a thundering
    /// herd); each runs `run` of CPU time and waits for the next round.
    /// A worker counts its rounds, a message task its wake-ups; the probe's
    /// run delays of the group are the workers' wakeup latencies (and the
    /// message tasks' timer wake-ups).
    FanOut {
        workers: u32,
        #[serde(with = "duration_str")]
        #[schemars(with = "DurationText")]
        run: Duration,
        #[serde(with = "duration_str")]
        #[schemars(with = "DurationText")]
        interval: Duration,
    },
    /// Many-to-many messaging as hackbench does: the first half of the
    /// group's tasks send `size`-byte messages, each to every receiver in
    /// turn, over a socket pair per receiver (AF_UNIX stream); the second
    /// half receive. Full sockets block senders, empty ones receivers. A
    /// receiver counts the messages it read, a sender those it wrote.
    Messaging {
        /// Bytes per message, 1 to 4096. Default: 100 (hackbench's).
        #[serde(default = "default_message_size")]
        size: u32,
    },
    /// Bursty, build-like work: each task waits a random gap, then forks a
    /// child process that burns a random CPU time and exits, again and
    /// again (both drawn from the seed), so the number of busy processes
    /// rises and falls. Counts finished jobs.
    Jobs {
        #[serde(with = "duration_str")]
        #[schemars(with = "DurationText")]
        min_run: Duration,
        #[serde(with = "duration_str")]
        #[schemars(with = "DurationText")]
        max_run: Duration,
        #[serde(with = "duration_str")]
        #[schemars(with = "DurationText")]
        min_gap: Duration,
        #[serde(with = "duration_str")]
        #[schemars(with = "DurationText")]
        max_gap: Duration,
    },
    /// Kernel work, timers: each task arms a periodic timer (a timerfd on
    /// CLOCK_MONOTONIC) firing every `interval` and waits for it; the
    /// kernel runs every expiry from the timer interrupt (hrtimer) and
    /// wakes the task. Counts wake-ups (a wake-up that finds several
    /// expirations, because the task ran late, counts once).
    Timers {
        #[serde(with = "duration_str")]
        #[schemars(with = "DurationText")]
        interval: Duration,
    },
    /// Kernel work, workqueue items: each round writes
    /// `/proc/sys/vm/stat_refresh`, for which the kernel queues a work item
    /// on every online CPU's per-CPU kworker and waits until all have run
    /// (`schedule_on_each_cpu` in mm/vmstat.c, Linux 4.4 and later), then
    /// the task sleeps `interval`. Counts rounds: a round ends only when a
    /// kworker has run on every CPU. Needs root (the guest is).
    Workqueue {
        /// Sleep between rounds. Default: 1ms.
        #[serde(with = "duration_str", default = "default_workqueue_interval")]
        #[schemars(with = "DurationText")]
        interval: Duration,
    },
    /// Kernel work, block I/O to a scratch device: each round writes
    /// `size` bytes at one offset and reads `size` bytes at another (both
    /// drawn from the seed, aligned to `size`) with O_DIRECT, so each goes
    /// through the block layer to the device and its completion interrupt
    /// wakes the task. In a VM the device is a scratch disk the harness
    /// attaches (virtio-blk, backed by a sparse 256 MiB file beside the
    /// session's console log, removed after the run); on the host target,
    /// an unnamed 256 MiB file in the cell's results directory, removed
    /// when the group ends. Counts rounds.
    BlockIo {
        /// Bytes per I/O: a multiple of 512 from 512 to 1 MiB. Default:
        /// 4096.
        #[serde(default = "default_block_size")]
        size: u32,
    },
    /// Replays recorded behaviour (what `scx-harness record` writes): a
    /// CPU burst, then a sleep, again and again, each drawn with the
    /// scenario's seed from a recorded distribution. A distribution is
    /// its quantiles at evenly spaced ranks, least first (2 to 101 of
    /// them: `[a, b, c]` is the minimum, median and maximum); a draw picks
    /// a rank uniformly and interpolates between the neighbouring
    /// quantiles. A burst is CPU time (preemptions inside it do not
    /// shorten it), a sleep wall time. Counts bursts.
    ///
    /// With `woken_by`, a share of the sleeps end with a real wakeup (a
    /// futex wake) by a task of a `replay` group (another, as a client
    /// wakes its server, or its own, as a pool's tasks wake each other): the sleeper waits until one of that group's tasks,
    /// ending a burst, wakes it. That group's tasks wake one waiting task
    /// at the end of a burst with the chance that makes the share: the
    /// share times this group's burst rate over theirs (a rate: threads
    /// over the mean burst plus the mean sleep), at most 1. A sleeper not
    /// woken within its longest sleep plus three of the waker's mean
    /// intervals wakes on its own, and the wakeup counts as missed.
    Replay {
        /// Run bursts: CPU time from a wakeup to the next sleep.
        #[serde(with = "duration_str::list")]
        #[schemars(with = "Vec<DurationText>")]
        run: Vec<Duration>,
        /// Sleeps: from blocking to the wakeup.
        #[serde(with = "duration_str::list")]
        #[schemars(with = "Vec<DurationText>")]
        sleep: Vec<Duration>,
        /// The recorded bursts' mean. When given, the draws above the
        /// last-but-one quantile (the top interval: from the 95th
        /// percentile to the maximum of 21 quantiles) are not uniform but
        /// `lo + (hi - lo) u^k`, `u` uniform, with the `k` that makes the
        /// draws' mean this one, as near as the quantiles allow (between
        /// the top interval's draws all at `lo` and all at `hi`). A
        /// heavy tail needs it: a build's bursts, 90 us at the median and
        /// seconds at the maximum, drawn uniformly from the 95th
        /// percentile up averaged 65 ms against 0.8 ms recorded. Default:
        /// none (uniform).
        #[serde(
            default,
            with = "duration_str::option",
            skip_serializing_if = "Option::is_none"
        )]
        #[schemars(with = "Option<DurationText>")]
        run_mean: Option<Duration>,
        /// The recorded sleeps' mean, as `run_mean` for the sleeps.
        #[serde(
            default,
            with = "duration_str::option",
            skip_serializing_if = "Option::is_none"
        )]
        #[schemars(with = "Option<DurationText>")]
        sleep_mean: Option<Duration>,
        /// Which groups' tasks wake this one's, and for what share of its
        /// sleeps; the rest end on their own. Default: none.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        woken_by: Vec<Coupling>,
    },
    /// Runs an external program (one instance per thread) from start to stop
    /// and keeps its output; iterations are not counted.
    Command {
        /// The program and its arguments (the program is found on PATH).
        /// Numbers are taken as their text: `[stress-ng, --cpu, 2]`.
        #[serde(deserialize_with = "scalars_as_text")]
        #[schemars(with = "Vec<String>")]
        argv: Vec<String>,
        /// The exit status it must end with, by itself, before the group's
        /// stop. Default: none expected; it may run until the stop (then
        /// its process group gets SIGTERM, SIGKILL 1 s later), and if it
        /// exits earlier it must exit 0.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit: Option<i32>,
        /// A server the program talks to: started first (in the group, so
        /// with its cgroup, nice, policy and CPUs), waited for until ready,
        /// and stopped with its whole process tree when the program ends.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        server: Option<Server>,
        /// The numbers the program reports, read from its output once it
        /// has exited by itself (so `exit` must be given): results name
        /// each `app.GROUP.NAME`; `compare`, `history` and the `app_metric`
        /// check read them. A rule that reads nothing fails the cell with
        /// the output's last lines.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        metrics: Vec<crate::appmetric::AppMetric>,
    },
}

/// A program a `command` group's program needs running first (redis for
/// redis-benchmark, PostgreSQL for pgbench).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// The program and its arguments, as `argv` of the command.
    #[serde(deserialize_with = "scalars_as_text")]
    #[schemars(with = "Vec<String>")]
    pub argv: Vec<String>,
    /// What says it is ready.
    #[serde(with = "serde_yaml::with::singleton_map")]
    #[schemars(with = "Ready")]
    pub ready: Ready,
    /// How long it may take to get ready: past it (or if the server exits
    /// first) the group fails with the server's last output lines.
    /// Default: 30s (PostgreSQL's initdb under TCG takes about 10 s).
    #[serde(with = "duration_str", default = "default_ready_within")]
    #[schemars(with = "DurationText")]
    pub within: Duration,
}

/// How a server says it is ready.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Ready {
    /// A TCP port on 127.0.0.1 accepts a connection.
    Port(u16),
    /// A file exists (a Unix socket, a pid file); `$SCX_HARNESS_SCRATCH`
    /// at its start is the instance's scratch directory.
    File(String),
    /// A line of its output (stdout and stderr) matches this regular
    /// expression.
    Line(String),
}

fn default_ready_within() -> Duration {
    Duration::from_secs(30)
}

impl Work {
    /// The `kind` names, for error messages.
    pub const KINDS: &'static [&'static str] = &[
        "spin",
        "periodic",
        "pingpong",
        "wake_chain",
        "fork_exit",
        "yield",
        "sleepy",
        "fan_out",
        "messaging",
        "jobs",
        "timers",
        "workqueue",
        "block_io",
        "replay",
        "command",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            Work::Spin => "spin",
            Work::Periodic { .. } => "periodic",
            Work::Pingpong { .. } => "pingpong",
            Work::WakeChain => "wake_chain",
            Work::ForkExit => "fork_exit",
            Work::Yield => "yield",
            Work::Sleepy { .. } => "sleepy",
            Work::FanOut { .. } => "fan_out",
            Work::Messaging { .. } => "messaging",
            Work::Jobs { .. } => "jobs",
            Work::Timers { .. } => "timers",
            Work::Workqueue { .. } => "workqueue",
            Work::BlockIo { .. } => "block_io",
            Work::Replay { .. } => "replay",
            Work::Command { .. } => "command",
        }
    }
}

fn default_message_size() -> u32 {
    100
}

fn default_workqueue_interval() -> Duration {
    Duration::from_millis(1)
}

fn default_block_size() -> u32 {
    4096
}

/// A list of YAML scalars (strings, numbers, booleans) as text.
fn scalars_as_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let values = Vec::<serde_yaml::Value>::deserialize(d)?;
    values
        .into_iter()
        .map(|v| match v {
            serde_yaml::Value::String(s) => Ok(s),
            serde_yaml::Value::Number(n) => Ok(n.to_string()),
            serde_yaml::Value::Bool(b) => Ok(b.to_string()),
            other => Err(serde::de::Error::custom(format!(
                "an argument must be a string or a number, not {other:?}"
            ))),
        })
        .collect()
}

/// A scheduling property: what a scenario's bound guards and what a
/// scheduler may claim to have (schedulers/registry.yaml `claims:`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Property {
    /// Busy tasks of different nice levels share a CPU in proportion to
    /// the fair class's weights (kernel/sched/core.c sched_prio_to_weight:
    /// about 1.25x per nice step).
    NiceWeights,
    /// Busy cgroups share the CPUs in proportion to their cgroup v2
    /// `cpu.weight`.
    CgroupWeights,
    /// A task that sleeps most of the time (waiting for a timer or another
    /// task) runs soon after it wakes while every CPU is busy: its wakeup
    /// latency stays near what the fair class gives it.
    Interactive,
    /// A task that a higher class (an RT or deadline task) preempts, or
    /// that waits on the CPU one takes, goes on on another CPU it may run
    /// on instead of waiting for the higher class to let go (for sched_ext:
    /// ops.cpu_release hands the CPU's local DSQ back with
    /// scx_bpf_reenqueue_local(); kernel/sched/ext.c leaves a preempted task
    /// at the head of that DSQ otherwise).
    HigherClassHandoff,
}

impl Property {
    /// Its name in YAML: `nice_weights`, `cgroup_weights`.
    pub fn name(self) -> &'static str {
        match self {
            Property::NiceWeights => "nice_weights",
            Property::CgroupWeights => "cgroup_weights",
            Property::Interactive => "interactive",
            Property::HigherClassHandoff => "higher_class_handoff",
        }
    }
}

/// A check on the result. Written as a map with one key, the check's kind:
/// `- run_delay: { group: g, p99: 20ms }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// Wakeup-to-run delay of a group's tasks (after warm-up): percentiles
    /// and maximum, each an upper bound, absolute or a multiple of what the
    /// same group got under the fair class in the same VM.
    RunDelay(RunDelayCheck),
    /// The longest time a task stayed runnable without running, from the
    /// start (warm-up included) until every group process has exited or
    /// the run was stopped; a wait still open then counts up to that
    /// moment. Every task of the scenario (group processes' own threads
    /// and their children included), or of one group, or with
    /// `tasks: guest` every task of the guest, kernel threads included.
    /// The run is stopped as soon as a task exceeds it.
    Stall(StallCheck),
    /// CPU time of groups: against their weights, or against what the
    /// group got under the kernel's fair class in the same VM.
    Share(ShareCheck),
    /// Iterations per second of a group: against a floor, or against the
    /// fair class in the same VM.
    Throughput(ThroughputCheck),
    /// The scheduler stayed attached the whole run, detached with an
    /// orderly exit, nr_rejected did not change, switched what its registry
    /// entry says (the kernel's switch_all; each group's tasks on sched_ext
    /// or not as its policy puts them), and the kernel printed no crash
    /// pattern.
    SchedulerHealthy(HealthyCheck),
    /// Each scheduler change of `swaps`: the new scheduler attached, and
    /// the longest wakeup-to-run delay that ended from the change until one
    /// second after the attach stayed under `max_delay`. A change watched
    /// less than that second after its attach (the run's end or the next
    /// change came first) fails as not measured, unless a wait it saw
    /// was over the bound already (a failure with its value).
    Swap(SwapCheck),
    /// A number a `command` group's program reported (its `metrics:`),
    /// against absolute bounds or the same metric under the fair class in
    /// the same VM.
    AppMetric(AppMetricCheck),
}

/// The kinds of check, as results name them (`checks[].check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckKind {
    RunDelay,
    Stall,
    Share,
    Throughput,
    SchedulerHealthy,
    Swap,
    AppMetric,
    /// Not written in a scenario: every `command` group's program did what
    /// it had to (its server got ready, it exited as declared, its metrics
    /// were read). An application that fails fails the cell.
    App,
}

impl Check {
    pub const KINDS: &'static [&'static str] = &[
        "run_delay",
        "stall",
        "share",
        "throughput",
        "scheduler_healthy",
        "swap",
        "app_metric",
    ];

    /// The property it guards, if any (stall and health checks guard
    /// what every scheduler owes).
    pub fn property(&self) -> Option<Property> {
        match self {
            Check::RunDelay(c) => c.property,
            Check::Share(c) => c.property,
            Check::Throughput(c) => c.property,
            Check::AppMetric(c) => c.property,
            Check::Stall(_) | Check::SchedulerHealthy(_) | Check::Swap(_) => None,
        }
    }

    /// Which kind of check it is, as a type (results carry it).
    pub fn id(&self) -> CheckKind {
        match self {
            Check::RunDelay(_) => CheckKind::RunDelay,
            Check::Stall(_) => CheckKind::Stall,
            Check::Share(_) => CheckKind::Share,
            Check::Throughput(_) => CheckKind::Throughput,
            Check::SchedulerHealthy(_) => CheckKind::SchedulerHealthy,
            Check::Swap(_) => CheckKind::Swap,
            Check::AppMetric(_) => CheckKind::AppMetric,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Check::RunDelay(_) => "run_delay",
            Check::Stall(_) => "stall",
            Check::Share(_) => "share",
            Check::Throughput(_) => "throughput",
            Check::SchedulerHealthy(_) => "scheduler_healthy",
            Check::Swap(_) => "swap",
            Check::AppMetric(_) => "app_metric",
        }
    }

    /// True if evaluating it needs the same scenario under the fair class
    /// in the same VM.
    pub fn needs_fair_baseline(&self) -> bool {
        match self {
            Check::RunDelay(r) => !r.fair_bounds().is_empty(),
            Check::Share(s) => s.min_of_fair.is_some(),
            Check::Throughput(t) => t.min_of_fair.is_some(),
            Check::AppMetric(a) => a.min_of_fair.is_some() || a.max_of_fair.is_some(),
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunDelayCheck {
    /// The scheduling property this bound guards (see [`Property`]): a
    /// scheduler that does not claim it (schedulers/registry.yaml
    /// `claims:`) gets this check reported as "not claimed", not failed.
    /// Absent: every scheduler is held to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<Property>,
    pub group: String,
    #[serde(default, with = "duration_str::option")]
    #[schemars(with = "Option<DurationText>")]
    pub p50: Option<Duration>,
    #[serde(default, with = "duration_str::option")]
    #[schemars(with = "Option<DurationText>")]
    pub p90: Option<Duration>,
    #[serde(default, with = "duration_str::option")]
    #[schemars(with = "Option<DurationText>")]
    pub p99: Option<Duration>,
    #[serde(default, with = "duration_str::option")]
    #[schemars(with = "Option<DurationText>")]
    pub p999: Option<Duration>,
    #[serde(default, with = "duration_str::option")]
    #[schemars(with = "Option<DurationText>")]
    pub max: Option<Duration>,
    /// Bounds relative to the fair class: the same statistic of the same
    /// group under the kernel's fair class in the same VM (the scenario
    /// runs under it first), times this factor. A bound that holds on a
    /// faster or slower host alike.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_of_fair: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p90_of_fair: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_of_fair: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p999_of_fair: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_of_fair: Option<f64>,
    /// Bound only the scheduler's own part of each wait
    /// (`higher_class_and_waking`: see `Excluding`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluding: Option<Excluding>,
    /// The relative bounds are never below this: a sub-millisecond
    /// percentile of the fair class moves several-fold between two runs of
    /// the same scheduler, and a bound a few microseconds wide would catch
    /// that noise, not the property.
    #[serde(
        default,
        with = "duration_str::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationText>")]
    pub floor: Option<Duration>,
}

impl RunDelayCheck {
    /// The bounds relative to the fair class, as (label, quantile or None
    /// for max, factor).
    pub fn fair_bounds(&self) -> Vec<(&'static str, Option<f64>, f64)> {
        given([
            self.p50_of_fair,
            self.p90_of_fair,
            self.p99_of_fair,
            self.p999_of_fair,
            self.max_of_fair,
        ])
    }

    /// The bounds set, as (label, quantile or None for max, bound).
    pub fn bounds(&self) -> Vec<(&'static str, Option<f64>, Duration)> {
        given([self.p50, self.p90, self.p99, self.p999, self.max])
    }
}

/// The statistics a run_delay bound names, in the order of its fields:
/// (label, quantile, or None for the maximum).
const STATISTICS: [(&str, Option<f64>); 5] = [
    ("p50", Some(0.50)),
    ("p90", Some(0.90)),
    ("p99", Some(0.99)),
    ("p99.9", Some(0.999)),
    ("max", None),
];

/// The statistics whose value is given, with it.
fn given<T>(values: [Option<T>; 5]) -> Vec<(&'static str, Option<f64>, T)> {
    STATISTICS
        .into_iter()
        .zip(values)
        .filter_map(|((label, q), v)| v.map(|v| (label, q, v)))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StallCheck {
    /// The longest a task may stay runnable without running.
    #[serde(with = "duration_str")]
    #[schemars(with = "DurationText")]
    pub max_runnable: Duration,
    /// Only this group's tasks (default: every task of the scenario).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Which tasks are watched: `scenario` (default) or `guest` (every
    /// task of the guest: kernel threads such as kworkers, the harness's
    /// own agent, anything; a task outside the scenario is named with its
    /// CPU).
    #[serde(default, skip_serializing_if = "StallTasks::is_scenario")]
    pub tasks: StallTasks,
    /// Bound only the scheduler's own part of each wait
    /// (`higher_class_and_waking`: see `Excluding`). Not
    /// with `tasks: guest` (a task outside the scenario has no such split).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluding: Option<Excluding>,
}

/// A part of each wait a bound leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Excluding {
    /// The time the CPU the task waited on ran a task of a higher class
    /// than fair and sched_ext (RT, deadline, stop): the kernel runs those
    /// first, whatever the scheduler does; and the time that CPU was
    /// waking: asleep in an idle state after the kernel told it to run (a
    /// reschedule IPI, a polling idle CPU's flag, or a wakeup onto it in
    /// an interrupt it took there) until it left that state, the
    /// platform's part (a C-state exit on metal; in a VM a halted vCPU the
    /// host has not run yet: milliseconds under TCG on a busy host). An
    /// idle CPU before anyone told it to run, and what it does once awake
    /// (the idle loop's end, the scheduler's pick, until its switch),
    /// stay the scheduler's. What is left is the scheduler's own part.
    HigherClassAndWaking,
}

impl std::fmt::Display for Excluding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Excluding::HigherClassAndWaking => "higher_class_and_waking",
        })
    }
}

/// The tasks a stall check watches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StallTasks {
    /// The scenario's own tasks.
    #[default]
    Scenario,
    /// Every task of the guest.
    Guest,
}

impl StallTasks {
    fn is_scenario(&self) -> bool {
        *self == StallTasks::Scenario
    }
}

impl StallCheck {
    /// Whether it bounds a task of group `group` (`None`: a task outside
    /// the scenario).
    pub fn applies_to(&self, group: Option<&str>) -> bool {
        match (group, &self.group) {
            (None, _) => self.tasks == StallTasks::Guest,
            (Some(_), None) => true,
            (Some(g), Some(only)) => g == only,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShareCheck {
    /// The scheduling property this bound guards (see [`Property`]): a
    /// scheduler that does not claim it (schedulers/registry.yaml
    /// `claims:`) gets this check reported as "not claimed", not failed.
    /// Absent: every scheduler is held to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<Property>,
    /// With `min_of_fair`: the group whose CPU time is compared with what it
    /// got under the fair class.
    #[serde(default)]
    pub group: Option<String>,
    /// The group's CPU time must be at least this fraction of its CPU time
    /// under the fair class in the same VM (e.g. 0.8).
    #[serde(default)]
    pub min_of_fair: Option<f64>,
    /// With `tolerance`: these groups (all busy) must split the CPU time
    /// they use in proportion to their weights: a group's weight is its
    /// cgroup's cpu.weight, or else the sum of its tasks' nice weights.
    #[serde(default)]
    pub by_weight: Option<Vec<String>>,
    /// How far (relative) a group's share may be from its weight's share.
    /// Default: 0.25.
    #[serde(default)]
    pub tolerance: Option<f64>,
    /// With `by_weight`: the part of the run judged, from the start (the
    /// weights in effect then, after the timeline's changes so far; none
    /// may change inside it). Default: the measurement window (warm-up's
    /// end to the run's end). Measured from the groups' CPU time sampled
    /// every 250 ms.
    #[serde(
        default,
        with = "duration_str::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationText>")]
    pub from: Option<Duration>,
    #[serde(
        default,
        with = "duration_str::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationText>")]
    pub to: Option<Duration>,
}

impl Scenario {
    /// Which way is better for metric `name` of this scenario's runs: an
    /// application metric's as its group declares it (`app.GROUP.NAME`),
    /// else what the name says (`metric::kind`).
    pub fn better(&self, name: &str) -> crate::stats::Better {
        if let Some(crate::metric::Metric::App { group, name: m }) =
            crate::metric::Metric::parse(name)
        {
            let declared = self
                .groups
                .iter()
                .filter(|g| g.name == group)
                .find_map(|g| match &g.work {
                    Work::Command { metrics, .. } => metrics.iter().find(|x| x.name == m),
                    _ => None,
                });
            if let Some(d) = declared {
                return d.better.into();
            }
        }
        crate::metric::kind(name).0
    }

    /// Whether a group has, or is given by the timeline, `policy: ext`:
    /// what a scheduler that switches only SCHED_EXT tasks schedules.
    pub fn uses_sched_ext_policy(&self) -> bool {
        self.groups.iter().any(|g| g.policy == Policy::Ext)
            || self.policy_ops().any(|p| p.policy == Policy::Ext)
    }

    /// The timeline's `policy` operations.
    pub fn policy_ops(&self) -> impl Iterator<Item = &timeline::PolicyOp> {
        self.timeline.iter().filter_map(|o| o.policy.as_ref())
    }

    /// Whether a group runs an application (`command`): its first run in
    /// a VM is a warm-up pass, not measured (agent::PassKind::WarmUp).
    pub fn runs_applications(&self) -> bool {
        self.groups
            .iter()
            .any(|g| matches!(g.work, Work::Command { .. }))
    }

    /// Whether a group does `block_io`, for which a VM gets a scratch disk.
    pub fn needs_scratch_disk(&self) -> bool {
        self.groups
            .iter()
            .any(|g| matches!(g.work, Work::BlockIo { .. }))
    }

    /// Group `g`'s weight for `share: by_weight` at `t` from the start:
    /// its cgroup's `cpu.weight`, else its tasks' nice weights summed, each
    /// after the timeline's `weight` and `nice` operations done by `t`.
    pub fn weight_at(&self, g: &Group, t: Duration) -> f64 {
        let done = |op: &Op| op.times(self.duration).iter().any(|at| *at <= t);
        match &g.cgroup {
            Some(cg) => {
                let mut w = cg.weight;
                for op in self.timeline.iter().filter(|o| done(o)) {
                    if let Some(wo) = &op.weight {
                        if wo.cgroup == cg.name {
                            w = wo.weight;
                        }
                    }
                }
                f64::from(w)
            }
            None => {
                let mut nice = g.nice;
                for op in self.timeline.iter().filter(|o| done(o)) {
                    if let Some(n) = &op.nice {
                        if n.group == g.name {
                            nice = n.nice;
                        }
                    }
                }
                f64::from(g.threads) * nice_weight(nice)
            }
        }
    }
}

/// The fair class's weight of a nice level (kernel/sched/core.c
/// `sched_prio_to_weight`: 1024 at nice 0, about 1.25x per step).
pub fn nice_weight(nice: i32) -> f64 {
    const W: [u32; 40] = [
        88761, 71755, 56483, 46273, 36291, 29154, 23254, 18705, 14949, 11916, 9548, 7620, 6100,
        4904, 3906, 3121, 2501, 1991, 1586, 1277, 1024, 820, 655, 526, 423, 335, 272, 215, 172,
        137, 110, 87, 70, 56, 45, 36, 29, 23, 18, 15,
    ];
    f64::from(W[(nice.clamp(-20, 19) + 20) as usize])
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ThroughputCheck {
    /// The scheduling property this bound guards (see [`Property`]): a
    /// scheduler that does not claim it (schedulers/registry.yaml
    /// `claims:`) gets this check reported as "not claimed", not failed.
    /// Absent: every scheduler is held to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<Property>,
    pub group: String,
    /// Iterations per second of the whole group, at least.
    #[serde(default)]
    pub min_per_sec: Option<f64>,
    /// At least this fraction of the group's iterations per second under
    /// the fair class in the same VM.
    #[serde(default)]
    pub min_of_fair: Option<f64>,
}

/// Bounds on one declared metric of a `command` group: `{ group: build,
/// metric: wall, max_of_fair: 1.3 }`. Which bound is a floor and which a
/// ceiling is the user's to say (`min`, `max`); the metric's `better`
/// decides only how `compare` reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppMetricCheck {
    /// The scheduling property this bound guards (see [`Property`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<Property>,
    pub group: String,
    /// A name of the group's `metrics:`.
    pub metric: String,
    /// At least / at most this value, in the metric's unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// At least / at most this multiple of the same metric under the fair
    /// class in the same VM (the scenario runs under it first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_of_fair: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_of_fair: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealthyCheck {}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwapCheck {
    /// The longest wakeup-to-run delay allowed around each change.
    #[serde(with = "duration_str")]
    #[schemars(with = "DurationText")]
    pub max_delay: Duration,
}

/// A scenario read from a file, with where it came from and its hash.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    pub scenario: Scenario,
    /// sha256 of its canonical JSON form: comments and layout do not
    /// change it, any value does.
    pub hash: String,
}

impl Scenario {
    /// The hash that identifies this scenario's content.
    pub fn hash(&self) -> String {
        let canonical = serde_json::to_vec(self).expect("a scenario serializes");
        sha256_hex(&canonical)[..16].to_string()
    }

    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    pub fn total_threads(&self) -> u32 {
        self.groups.iter().map(|g| g.threads).sum()
    }

    pub fn needs_fair_baseline(&self) -> bool {
        self.checks.iter().any(Check::needs_fair_baseline)
    }
}

/// Reads, parses and validates a scenario file: one clear error naming the
/// file, the line and what was expected, before any VM starts.
pub fn load(path: &Path) -> Result<Loaded> {
    let text = read_text(path, "scenario")?;
    parse(path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<Loaded> {
    let scenario: Scenario = parse_yaml(path, text, HINT)?;
    validate::validate(path, text, &scenario)?;
    Ok(Loaded {
        path: path.to_path_buf(),
        hash: scenario.hash(),
        scenario,
    })
}

/// The bundled scenarios (`scenarios/*.yaml` of the checkout), by name.
pub fn bundled_dir() -> PathBuf {
    crate::paths::workspace_root().join("scenarios")
}

/// A scenario named on the command line: a path, or the name of a bundled
/// scenario.
pub fn resolve(arg: &str) -> Result<Loaded> {
    let p = Path::new(arg);
    if p.exists() || arg.ends_with(".yaml") || arg.contains('/') {
        return load(p);
    }
    let bundled = bundled_dir().join(format!("{arg}.yaml"));
    if bundled.is_file() {
        return load(&bundled);
    }
    Err(crate::error::fail(
        crate::error::Failure::BadInput,
        format!(
            "no scenario {arg:?}: not a file, and not one of the bundled scenarios ({})\n  fix: pass a scenario file or a bundled name",
            bundled_names().join(", ")
        ),
    ))
}

/// Names of the bundled scenarios, sorted.
pub fn bundled_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(bundled_dir())
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_suffix(".yaml")
                        .map(str::to_string)
                })
                // The matrix file lives here too, and is not a scenario.
                .filter(|n| n != "matrix")
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The JSON Schema of the scenario format, for editors.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Scenario);
    serde_json::to_string_pretty(&schema).expect("a schema serializes") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Failure;

    const GOOD: &str = r#"
name: interactive-vs-batch
description: periodic tasks keep low wakeup latency while hogs saturate every CPU
vm: { cpus: 2, memory: 2G }
duration: 10s
warmup: 2s
seed: 7
groups:
  - { name: batch, threads: 4, nice: 5, work: { kind: spin } }
  - name: interactive
    threads: 2
    work: { kind: periodic, run: 1ms, period: 10ms }
    cpus: [0, 1]
    start: 1s
checks:
  - run_delay: { group: interactive, p99: 20ms, max: 200ms }
  - stall: { max_runnable: 2s }
  - share: { group: batch, min_of_fair: 0.8 }
  - scheduler_healthy: {}
"#;

    fn parse_str(text: &str) -> Result<Loaded> {
        parse(Path::new("s.yaml"), text)
    }

    /// The error for `text`, which must be bad input.
    fn err(text: &str) -> String {
        let e = parse_str(text).expect_err("should be rejected");
        assert_eq!(crate::classify(&e), Some(Failure::BadInput), "{e:#}");
        format!("{e:#}")
    }

    /// GOOD with `from` replaced by `to`.
    fn good_with(from: &str, to: &str) -> String {
        assert!(GOOD.contains(from), "{from}");
        GOOD.replace(from, to)
    }

    #[test]
    fn the_example_parses_with_defaults() {
        let l = parse_str(GOOD).unwrap();
        let s = &l.scenario;
        assert_eq!(s.duration, Duration::from_secs(10));
        assert_eq!(s.warmup, Duration::from_secs(2));
        assert_eq!(s.groups[0].comm(), "batch");
        assert_eq!(s.groups[1].start(), Duration::from_secs(1));
        assert_eq!(s.groups[1].stop(s.duration), s.duration);
        assert_eq!(
            s.groups[1].work,
            Work::Periodic {
                run: Duration::from_millis(1),
                period: Duration::from_millis(10)
            }
        );
        assert_eq!(s.checks.len(), 4);
        assert!(s.needs_fair_baseline());
        assert_eq!(s.total_threads(), 6);
        // Defaults.
        let min = parse_str(
            "name: m\ndescription: d\nduration: 3s\ngroups:\n  - { name: a, work: { kind: spin } }\n",
        )
        .unwrap();
        assert_eq!(min.scenario.vm, VmShape::default());
        assert_eq!(min.scenario.warmup, Duration::from_secs(1));
        assert_eq!(min.scenario.groups[0].threads, 1);
        assert!(min.scenario.checks.is_empty());
    }

    #[test]
    fn the_hash_follows_values_not_layout() {
        let a = parse_str(GOOD).unwrap().hash;
        let b = parse_str(&format!(
            "# a comment\n{}",
            GOOD.replace("seed: 7", "seed:   7")
        ))
        .unwrap()
        .hash;
        assert_eq!(a, b);
        let c = parse_str(&good_with("seed: 7", "seed: 8")).unwrap().hash;
        assert_ne!(a, c);
    }

    #[test]
    fn yaml_mistakes_name_line_and_column_and_list_the_choices() {
        let e = err(&good_with("kind: spin", "kind: spinn"));
        assert!(e.contains("s.yaml:9:"), "{e}");
        assert!(e.contains("unknown variant `spinn`"), "{e}");
        for k in Work::KINDS {
            assert!(e.contains(&format!("`{k}`")), "{k} missing: {e}");
        }
        let e = err(&good_with("- stall:", "- stal:"));
        assert!(e.contains("unknown variant `stal`"), "{e}");
        for k in Check::KINDS {
            assert!(e.contains(&format!("`{k}`")), "{k} missing: {e}");
        }
        let e = err(&good_with("seed: 7", "seed: 7\ncolour: red"));
        assert!(
            e.contains("s.yaml:8:1") && e.contains("unknown field `colour`"),
            "{e}"
        );
        let e = err(&good_with("duration: 10s", "duration: ten"));
        assert!(
            e.contains("s.yaml:5:11") && e.contains("not a duration"),
            "{e}"
        );
        let e = err(&good_with("p99: 20ms", "p99: 20 parsecs"));
        assert!(e.contains("unknown unit"), "{e}");
    }

    #[test]
    fn impossible_scenarios_are_rejected_with_their_place() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "threads: 4, nice: 5",
                "threads: 0, nice: 5",
                "s.yaml:9: group batch: threads is 0",
            ),
            (
                "p99: 20ms, max: 200ms",
                "p99: 300ms, max: 200ms",
                "s.yaml:16: run_delay: p99 300ms is above max 200ms",
            ),
            (
                "cpus: [0, 1]",
                "cpus: [0, 2]",
                "s.yaml:10: group interactive: cpus lists CPU 2, but the VM has 2",
            ),
            (
                "warmup: 2s",
                "warmup: 10s",
                "s.yaml:6: warmup 10s is not shorter than the duration 10s",
            ),
            ("nice: 5", "nice: 25", "nice 25 is not between -20 and 19"),
            (
                "start: 1s",
                "start: 11s",
                "s.yaml:10: group interactive: start 11s is not before stop 10s",
            ),
            (
                "run: 1ms, period: 10ms",
                "run: 10ms, period: 10ms",
                "periodic run 10ms must be more than 0 and less than the period",
            ),
            (
                "group: interactive, p99",
                "group: interactiv, p99",
                "run_delay: no group \"interactiv\"; the groups are batch, interactive",
            ),
            (
                "min_of_fair: 0.8",
                "min_of_fair: 0",
                "min_of_fair 0 must be above 0",
            ),
            (
                "max_runnable: 2s",
                "max_runnable: 10us",
                "stall: max_runnable must be at least 1ms",
            ),
            (
                "max_runnable: 2s",
                "max_runnable: 2s, group: nobody",
                "stall: no group \"nobody\"",
            ),
            (
                "max_runnable: 2s",
                "max_runnable: 2s, group: batch, tasks: guest",
                "stall: group and tasks: guest do not go together",
            ),
            (
                "p99: 20ms, max: 200ms",
                "p99_of_fair: 0",
                "run_delay: p99_of_fair 0 must be above 0",
            ),
            (
                "p99: 20ms, max: 200ms",
                "p99: 20ms, floor: 1ms",
                "run_delay: floor bounds the relative bounds from below",
            ),
            ("memory: 2G", "memory: 2 gallons", "vm.memory \"2 gallons\""),
            ("cpus: 2,", "cpus: 0,", "vm.cpus 0"),
            (
                "name: interactive-vs-batch",
                "name: \"bad name\"",
                "s.yaml:2: name \"bad name\"",
            ),
            (
                "- scheduler_healthy: {}",
                "- scheduler_healthy: {}\n  - scheduler_healthy: {}",
                "scheduler_healthy is listed twice",
            ),
            (
                "- { name: batch,",
                "- { name: interactive,",
                "group \"interactive\" is named twice",
            ),
        ];
        for (from, to, expected) in cases {
            let e = err(&good_with(from, to));
            assert!(
                e.contains(expected),
                "for {to:?}\n expected: {expected}\n got: {e}"
            );
            assert!(e.contains("fix: see scenarios/README.md"), "{e}");
        }
    }

    #[test]
    fn work_rules() {
        let group = |work: &str, threads: u32| {
            format!(
                "name: w\ndescription: d\nduration: 3s\ngroups:\n  - name: g\n    threads: {threads}\n    work: {work}\n"
            )
        };
        assert!(err(&group("{ kind: pingpong }", 3))
            .contains("pingpong runs in pairs; threads 3 is odd"));
        assert!(err(&group("{ kind: wake_chain }", 1)).contains("wake_chain needs at least 2"));
        assert!(err(&group(
            "{ kind: sleepy, run: 1ms, min_sleep: 5ms, max_sleep: 1ms }",
            1
        ))
        .contains("min_sleep 5ms is above max_sleep 1ms"));
        assert!(
            err(&group("{ kind: replay, run: [1ms], sleep: [1ms, 2ms] }", 1))
                .contains("replay run has 1 quantile(s); a distribution is 2 to 101")
        );
        assert!(err(&group(
            "{ kind: replay, run: [1ms, 2ms], sleep: [1ms, 3ms, 2ms] }",
            1
        ))
        .contains("replay sleep is not in order: quantile 3 (2ms) is below quantile 2 (3ms)"));
        assert!(err(&group(
            "{ kind: replay, run: [0us, 0us], sleep: [0us, 0us] }",
            1
        ))
        .contains("nothing to replay"));
        assert!(err(&group(
            "{ kind: replay, run: [1ms, 2ms], sleep: [1ms, 2ms], sleep_mean: 3ms }",
            1
        ))
        .contains("replay sleep_mean 3ms is outside its quantiles (1ms to 2ms)"));
        assert!(err(&group(
            "{ kind: replay, run: [1ms, 2 parsecs], sleep: [1ms, 2ms] }",
            1
        ))
        .contains("parsecs"));
        let ok = parse_str(&group(
            "{ kind: replay, run: [50us, 200us, 1ms], sleep: [1ms, 2ms, 8ms] }",
            2,
        ))
        .unwrap();
        assert_eq!(ok.scenario.groups[0].work.kind(), "replay");
        assert!(err(&group("{ kind: command, argv: [] }", 1)).contains("command argv is empty"));
        let e = err(&group("{ kind: command, argv: [no-such-program-here] }", 1));
        assert!(
            e.contains("\"no-such-program-here\" is not installed"),
            "{e}"
        );
        assert!(e.contains("cargo ci setup"), "{e}");
        parse_str(&group("{ kind: command, argv: [sh, -c, 'true'] }", 1)).unwrap();
        parse_str(&group("{ kind: pingpong }", 4)).unwrap();
        assert!(err(&group("{ kind: periodic, run: 1ms }", 1)).contains("missing field `period`"));
    }

    #[test]
    fn replay_couplings_name_replay_groups_with_shares_that_fit() {
        let two = |woken_by: &str, other: &str| {
            format!(
                "name: w\ndescription: d\nduration: 3s\ngroups:\n  - name: server\n    threads: 2\n    work: {{ kind: replay, run: [1ms, 2ms], sleep: [1ms, 2ms], woken_by: {woken_by} }}\n  - name: client\n    work: {other}\n"
            )
        };
        let replay = "{ kind: replay, run: [1ms, 2ms], sleep: [5ms, 9ms] }";
        let ok = parse_str(&two(
            "[{ group: client, share: 0.6 }, { group: server, share: 0.4 }]",
            replay,
        ))
        .unwrap();
        let Work::Replay { woken_by, .. } = &ok.scenario.groups[0].work else {
            panic!()
        };
        assert_eq!(woken_by[0].group, "client");
        let e = err(&two("[{ group: nobody, share: 0.5 }]", replay));
        assert!(
            e.contains(
                "group server: woken_by 1: no group \"nobody\"; the groups are server, client"
            ),
            "{e}"
        );
        let e = err(&two("[{ group: client, share: 0.5 }]", "{ kind: spin }"));
        assert!(
            e.contains("group client is a spin group; only a replay group's tasks wake others"),
            "{e}"
        );
        for share in ["0", "-0.1", "1.5", ".nan"] {
            let e = err(&two(
                &format!("[{{ group: client, share: {share} }}]"),
                replay,
            ));
            assert!(e.contains("is not over 0 and at most 1"), "{share}: {e}");
        }
        let e = err(&two(
            "[{ group: client, share: 0.5 }, { group: client, share: 0.1 }]",
            replay,
        ));
        assert!(e.contains("woken_by 2: group client is named twice"), "{e}");
        let e = err(&two(
            "[{ group: client, share: 0.7 }, { group: server, share: 0.4 }]",
            replay,
        ));
        assert!(e.contains("shares add up to 1.100"), "{e}");
        // A lone thread cannot wake itself.
        let e = err(
            &two("[{ group: server, share: 0.4 }]", replay).replace("threads: 2", "threads: 1")
        );
        assert!(
            e.contains("group server has one thread, which cannot wake itself"),
            "{e}"
        );
        assert!(err(&two("[{ group: client, share: 0.5, by: x }]", replay))
            .contains("unknown field `by`"));
    }

    #[test]
    fn applications_declare_metrics_servers_and_checks_that_check_can_judge() {
        let wall = "{ name: wall, from: wall_time, unit: s, better: lower }";
        let app = |extra: &str, threads: u32, checks: &str| {
            format!(
                "name: a\ndescription: d\nduration: 3s\ngroups:\n  - {{ name: g, threads: {threads}, work: {{ kind: command, argv: [sh, -c, 'true']{extra} }} }}\n  - {{ name: s, work: {{ kind: spin }} }}\nchecks:\n{checks}"
            )
        };
        let ok = format!(", exit: 0, metrics: [{wall}]");
        parse_str(&app(
            &ok,
            1,
            "  - app_metric: { group: g, metric: wall, max_of_fair: 1.5 }\n",
        ))
        .unwrap();
        let cases = [
            (app(&format!(", metrics: [{wall}]"), 1, ""), "`exit` is not given"),
            (app(&ok, 2, ""), "one instance of the program, not threads 2"),
            (app(&format!(", exit: 0, metrics: [{wall}, {wall}]"), 1, ""), "metric wall is declared twice"),
            (app(", exit: 0, metrics: [{ name: t, from: { pattern: 'x' }, unit: s, better: lower }]", 1, ""), "no capture group"),
            (app(", server: { argv: [no-such-server-here], ready: { port: 6379 } }", 1, ""), "command server program \"no-such-server-here\" is not installed"),
            (app(", server: { argv: [sh], ready: { line: '(' } }", 1, ""), "server ready line"),
            (app(", server: { argv: [sh], ready: { port: 6379 } }", 2, ""), "a server serves one instance of the program, not threads 2"),
            (app(", server: { argv: [sh], ready: { file: sock } }", 1, ""), "an absolute path, or one under the instance's scratch directory"),
            (app(", exit: 300", 1, ""), "exit 300: an exit status is 0 to 255"),
            (app(&ok, 1, "  - app_metric: { group: g, metric: tps, max: 1 }\n"), "declares no metric \"tps\"\n  fix: one of: wall"),
            (app(&ok, 1, "  - app_metric: { group: s, metric: wall, max: 1 }\n"), "group s runs no command"),
            (app(&ok, 1, "  - app_metric: { group: g, metric: wall }\n"), "give min, max, min_of_fair or max_of_fair"),
            (app(&ok, 1, "  - app_metric: { group: g, metric: wall, min: 5, max: 1 }\n"), "min and max: 5 is above 1"),
        ];
        for (text, says) in cases {
            let e = err(&text);
            assert!(e.contains(says), "expected {says:?} in:\n{e}");
        }
        // The server's readiness forms.
        let s: Server =
            serde_yaml::from_str("{ argv: [x], ready: { file: $SCX_HARNESS_SCRATCH/sock } }")
                .unwrap();
        assert_eq!(s.ready, Ready::File("$SCX_HARNESS_SCRATCH/sock".into()));
        assert_eq!(s.within, Duration::from_secs(30));
    }

    #[test]
    fn policies_processes_and_topology_are_checked() {
        let with = |group: &str| {
            format!("name: w\ndescription: d\nduration: 3s\ngroups:\n  - {{ name: a, work: {{ kind: spin }}{group} }}\n")
        };
        let ok = parse_str(&with(", policy: fifo, priority: 50, tasks: processes")).unwrap();
        let g = &ok.scenario.groups[0];
        assert_eq!(
            (g.policy, g.priority(), g.tasks),
            (Policy::Fifo, 50, Tasks::Processes)
        );
        for (group, says) in [
            (", policy: rr", "policy rr needs a priority"),
            (
                ", policy: fifo, priority: 98",
                "priority 98 is not between 1 and 97",
            ),
            (
                ", policy: idle, priority: 5",
                "only fifo and rr take a priority",
            ),
            (", policy: deadline", "unknown variant `deadline`"),
            (", tasks: fibers", "unknown variant `fibers`"),
            (
                ", cgroup: { name: harness.x }",
                "none starting with \"harness.\"",
            ),
            (", cgroup: { name: a/b/c/d/e }", "1 to 4 levels"),
            (
                ", cgroup: { name: a, max: { quota: 500us } }",
                "the quota at least 1ms",
            ),
        ] {
            let e = err(&with(group));
            assert!(e.contains(says), "{group}: {e}");
        }
        // The defaults keep the hash of a scenario written before them.
        let plain = parse_str(&with("")).unwrap().scenario;
        let json = serde_json::to_string(&plain).unwrap();
        for absent in [
            "policy", "priority", "tasks", "timeline", "knobs", "cgroups", "topology",
        ] {
            assert!(!json.contains(absent), "{absent} in {json}");
        }
        let topo = |t: &str| {
            format!("name: w\ndescription: d\nduration: 3s\nvm: {{ cpus: 4, {t} }}\ngroups:\n  - {{ name: a, work: {{ kind: spin }} }}\n")
        };
        parse_str(&topo(
            "topology: { sockets: 2, cores: 1, threads: 2, numa: true }",
        ))
        .unwrap();
        assert!(err(&topo("topology: { sockets: 2, cores: 2, threads: 2 }"))
            .contains("= 8 CPUs, but vm.cpus is 4"));
        assert!(err(&topo("topology: { cores: 4, numa: true }")).contains("at least 2 sockets"));
    }

    #[test]
    fn kernel_work_kinds_are_checked_and_only_block_io_needs_a_disk() {
        let with = |work: &str| {
            format!(
                "name: w\ndescription: d\nduration: 3s\ngroups:\n  - {{ name: a, work: {work} }}\n"
            )
        };
        let ok = |work: &str| parse_str(&with(work)).unwrap().scenario;
        assert!(!ok("{ kind: timers, interval: 10us }").needs_scratch_disk());
        assert_eq!(
            ok("{ kind: workqueue }").groups[0].work,
            Work::Workqueue {
                interval: Duration::from_millis(1)
            }
        );
        let b = ok("{ kind: block_io }");
        assert_eq!(b.groups[0].work, Work::BlockIo { size: 4096 });
        assert!(b.needs_scratch_disk());
        for (work, says) in [
            (
                "{ kind: timers, interval: 9us }",
                "timers interval 9us is below 10us",
            ),
            ("{ kind: timers }", "missing field `interval`"),
            (
                "{ kind: block_io, size: 1000 }",
                "block_io size 1000: a multiple of 512",
            ),
            ("{ kind: block_io, size: 2097152 }", "block_io size 2097152"),
            ("{ kind: block_io, size: 0 }", "block_io size 0"),
            ("{ kind: workqueue, every: 1ms }", "unknown field `every`"),
        ] {
            let e = err(&with(work));
            assert!(e.contains(says), "{work}: {e}");
            assert!(e.contains("s.yaml:"), "{work}: {e}");
        }
    }

    #[test]
    fn timeline_knob_and_work_rules() {
        let with = |extra: &str| {
            format!(
                "name: w\ndescription: d\nduration: 10s\ncgroups:\n  - {{ path: s.slice }}\ngroups:\n  - {{ name: a, threads: 4, work: {{ kind: spin }}, cgroup: {{ name: s.slice/a.scope, weight: 1000 }} }}\n  - {{ name: b, threads: 2, work: {{ kind: spin }}, cgroup: {{ name: s.slice/b.scope }} }}\n{extra}"
            )
        };
        let ok = parse_str(&with(
            "timeline:\n  - { at: 1s, every: 100ms, until: 2s, affinity: { group: a, cpus: random, tasks: 2 } }\n  - { at: 5s, weight: { cgroup: s.slice/a.scope, weight: 100 } }\n  - { at: 1s, every: 1s, churn: { tasks: 2, life: 500ms, parent: s.slice } }\n  - { at: 2s, move: { group: b, to: [s.slice/a.scope, s.slice/b.scope] } }\n  - { at: 3s, cpu_max: { cgroup: s.slice, quota: 50ms } }\n  - { at: 4s, hotplug: { cpu: 1, online: false } }\nknobs: { kernel.sched_rt_runtime_us: 950000 }\nchecks:\n  - share: { by_weight: [a, b], from: 5s }\n",
        ))
        .unwrap();
        let s = &ok.scenario;
        assert_eq!(s.timeline[0].times(s.duration).len(), 11);
        assert_eq!(s.weight_at(&s.groups[0], Duration::from_secs(1)), 1000.0);
        assert_eq!(s.weight_at(&s.groups[0], Duration::from_secs(5)), 100.0);
        for (extra, says, line) in [
            (
                "timeline:\n  - { at: 1s, nice: { group: zz, nice: 3 } }\n",
                "no group \"zz\"; the groups are a, b",
                10,
            ),
            (
                "timeline:\n  - { at: 1s }\n",
                "does exactly one of affinity, nice",
                10,
            ),
            (
                "timeline:\n  - { at: 1s, nice: { group: a, nice: 3 }, hotplug: { cpu: 1, online: true } }\n",
                "this one does nice and hotplug",
                10,
            ),
            (
                "timeline:\n  - { at: 1s, nice: { group: a, nice: 3 } }\n  - { at: 12s, nice: { group: a, nice: 3 } }\n",
                "nice at 12s is not before the end of the run",
                11,
            ),
            (
                "timeline:\n  - { at: 1s, affinity: { group: a, cpus: [0, 2] } }\n",
                "CPU 2, but the VM has 2",
                10,
            ),
            (
                "timeline:\n  - { at: 1s, policy: { group: a, policy: fifo } }\n",
                "policy fifo needs a priority",
                10,
            ),
            (
                "timeline:\n  - { at: 1s, move: { group: a, to: [nowhere] } }\n",
                "no cgroup \"nowhere\" in the scenario (its cgroups: s.slice, s.slice/a.scope, s.slice/b.scope)",
                10,
            ),
            (
                "timeline:\n  - { at: 1s, every: 5ms, nice: { group: a, nice: 1 } }\n",
                "at least 10ms",
                10,
            ),
            (
                "timeline:\n  - { at: 1s, hotplug: { cpu: 0, online: false } }\n",
                "CPU 0 stays online",
                10,
            ),
            (
                "timeline:\n  - { at: 1s, every: 1s, churn: { life: 2s } }\n",
                "shorter than `every`",
                10,
            ),
            (
                "timeline:\n  - { at: 3s, weight: { cgroup: s.slice/a.scope, weight: 10 } }\nchecks:\n  - share: { by_weight: [a, b] }\n",
                "changes a compared group or its cgroup at 3s inside 1s-10s",
                12,
            ),
        ] {
            let e = err(&with(extra));
            assert!(e.contains(says), "{extra}: {e}");
            assert!(e.contains(&format!(":{line}")), "{extra}: line {line}: {e}");
        }
        assert!(err(&with("knobs: { sched_rt_runtime_us: 1 }\n")).contains("is not a sysctl name"));
        assert!(err(&with("knobs: { kernel.x: [1] }\n"))
            .contains("a knob's value is a number or one line"));
        assert!(err(&with(
            "timeline:\n  - { at: 1s, affinity: { group: a, cpus: rnd } }\n"
        ))
        .contains("`random` or `all`, not \"rnd\""));
        assert!(err(&with(
            "timeline:\n  - { at: 1s, move: { group: a, to: [s.slice] } }\n"
        ))
        .contains("has cgroups below it"));
        let nested = "name: w\ndescription: d\nduration: 3s\ngroups:\n  - { name: a, work: { kind: spin }, cgroup: { name: x } }\n  - { name: b, work: { kind: spin }, cgroup: { name: x/y } }\n";
        assert!(err(nested).contains("group a: cgroup x has a cgroup below it (x/y)"));
        let cmd = "name: w\ndescription: d\nduration: 3s\ngroups:\n  - { name: c, work: { kind: command, argv: [sh, -c, 'true'] } }\ntimeline:\n  - { at: 1s, nice: { group: c, nice: 5 } }\n";
        assert!(err(cmd).contains("on group c, a command"));
        let idle = "name: w\ndescription: d\nduration: 3s\ngroups:\n  - { name: a, policy: idle, work: { kind: spin } }\n  - { name: b, work: { kind: spin } }\nchecks:\n  - share: { by_weight: [a, b] }\n";
        assert!(err(idle).contains("group a has policy idle or a cpu.max"));
        parse_str(&idle.replace("policy: idle", "policy: ext")).unwrap();
        assert!(err(&with("timeline:\n  - { at: 1s, every: 1s, churn: { life: 500ms, parent: s.slice/a.scope } }\n"))
            .contains("churn under s.slice/a.scope, group a's cgroup"));
        let moved = "name: w\ndescription: d\nduration: 10s\ngroups:\n  - { name: a, work: { kind: spin }, cgroup: { name: x } }\n  - { name: b, work: { kind: spin }, cgroup: { name: y } }\n  - { name: c, work: { kind: spin }, cgroup: { name: z } }\ntimeline:\n  - { at: 3s, move: { group: c, to: [x] } }\nchecks:\n  - share: { by_weight: [a, b] }\n";
        assert!(err(moved).contains("changes a compared group or its cgroup at 3s"));
        let work = |w: &str, threads: u32| {
            format!("name: w\ndescription: d\nduration: 3s\ngroups:\n  - {{ name: a, threads: {threads}, work: {w} }}\n")
        };
        parse_str(&work(
            "{ kind: fan_out, workers: 16, run: 100us, interval: 10ms }",
            68,
        ))
        .unwrap();
        parse_str(&work("{ kind: messaging }", 20)).unwrap();
        parse_str(&work(
            "{ kind: jobs, min_run: 1ms, max_run: 2ms, min_gap: 0ms, max_gap: 1ms }",
            2,
        ))
        .unwrap();
        for (w, threads, says) in [
            (
                "{ kind: fan_out, workers: 16, run: 100us, interval: 10ms }",
                20,
                "not a multiple of 17",
            ),
            (
                "{ kind: fan_out, workers: 1, run: 10ms, interval: 10ms }",
                2,
                "less than the interval",
            ),
            ("{ kind: messaging }", 3, "not an even number"),
            ("{ kind: messaging, size: 5000 }", 2, "1 to 4096 bytes"),
            (
                "{ kind: jobs, min_run: 2ms, max_run: 1ms, min_gap: 0ms, max_gap: 1ms }",
                1,
                "at most max_run",
            ),
        ] {
            let e = err(&work(w, threads));
            assert!(e.contains(says), "{w}: {e}");
        }
    }

    #[test]
    fn share_and_throughput_rules() {
        let with = |checks: &str| {
            format!(
                "name: w\ndescription: d\nduration: 3s\ngroups:\n  - {{ name: a, work: {{ kind: spin }} }}\n  - {{ name: b, work: {{ kind: yield }} }}\n  - {{ name: c, work: {{ kind: spin }}, stop: 500ms }}\nchecks:\n  - {checks}\n"
            )
        };
        assert!(err(&with("share: { by_weight: [a] }")).contains("at least 2 groups"));
        assert!(err(&with("share: { by_weight: [a, b] }"))
            .contains("needs busy groups (work spin); b does yield"));
        assert!(err(&with("share: { group: a }")).contains("give either group with min_of_fair"));
        assert!(err(&with(
            "share: { group: a, min_of_fair: 0.5, tolerance: 0.1 }"
        ))
        .contains("tolerance, from and to go with by_weight"));
        assert!(err(&with("throughput: { group: a }")).contains("give min_per_sec or min_of_fair"));
        assert!(err(&with("throughput: { group: c, min_per_sec: 1 }"))
            .contains("before the warm-up ends"));
        assert!(err(&with("run_delay: { group: a }")).contains("give at least one of"));
        parse_str(&with("share: { by_weight: [a, c], tolerance: 0.3 }")).unwrap_err();
        let b = parse_str(
            "name: w\ndescription: d\nduration: 3s\ngroups:\n  - { name: a, work: { kind: spin }, cgroup: { name: x, weight: 200 } }\n  - { name: b, work: { kind: spin }, cgroup: { name: y } }\nchecks:\n  - share: { by_weight: [a, b], tolerance: 0.3 }\n",
        )
        .unwrap();
        assert_eq!(b.scenario.groups[1].cgroup.as_ref().unwrap().weight, 100);
        let e = err("name: w\ndescription: d\nduration: 3s\ngroups:\n  - { name: a, work: { kind: spin }, cgroup: { name: x, weight: 200 } }\n  - { name: b, work: { kind: spin }, cgroup: { name: x, weight: 300 } }\n");
        assert!(
            e.contains("group a: cgroup \"x\" has weight 200 here and another in group b"),
            "{e}"
        );
    }

    #[test]
    fn limits_keep_memory_bounded() {
        let mut text = String::from("name: big\ndescription: d\nduration: 3s\ngroups:\n");
        for i in 0..(MAX_GROUPS + 1) {
            text.push_str(&format!("  - {{ name: g{i}, work: {{ kind: spin }} }}\n"));
        }
        assert!(err(&text).contains(&format!("{} groups: at most {MAX_GROUPS}", MAX_GROUPS + 1)));
        let e = err("name: w\ndescription: d\nduration: 3s\ngroups:\n  - { name: a, threads: 5000, work: { kind: spin } }\n");
        assert!(e.contains("5000 threads in all: at most 1024"), "{e}");
    }

    #[test]
    fn the_committed_json_schema_is_current() {
        let committed =
            std::fs::read_to_string(bundled_dir().join("scenario.schema.json")).unwrap_or_default();
        assert!(
            committed == json_schema(),
            "scenarios/scenario.schema.json is stale: run `cargo run -p scx-harness -- schema > scenarios/scenario.schema.json`"
        );
    }
}
