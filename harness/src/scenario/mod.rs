//! Workload scenarios (`scenarios/*.yaml`): what runs in the guest, for how
//! long, and which checks its result must pass.
//!
//! Types, parsing, validation and the content hash; the format is
//! documented in `scenarios/README.md` and as a JSON Schema generated from
//! these types (`scx-harness schema`). Knows nothing about VMs, schedulers
//! or how the work is done (`workload`) and measured (`probe`).

pub mod validate;

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
    /// What the result must satisfy. Default: none (measure only).
    #[serde(default, with = "serde_yaml::with::singleton_map_recursive")]
    #[schemars(with = "Vec<Check>")]
    pub checks: Vec<Check>,
}

/// A duration as text: a number and a unit (us, ms, s, m, h), e.g. "250ms".
#[derive(JsonSchema)]
#[schemars(
    transparent,
    extend("pattern" = r"^[0-9]+(\.[0-9]+)?\s*(us|ms|s|m|min|h)?$")
)]
#[allow(dead_code)]
struct DurationText(String);

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

impl Group {
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
    /// Its name; groups naming the same cgroup share it.
    pub name: String,
    /// cpu.weight, 1 to 10000. Default: 100.
    #[serde(default = "default_weight")]
    pub weight: u32,
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
    /// (threads must be even).
    Pingpong,
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
    /// Runs an external program (one instance per thread) from start to stop
    /// and keeps its output; iterations are not counted.
    Command {
        /// The program and its arguments (the program is found on PATH).
        /// Numbers are taken as their text: `[stress-ng, --cpu, 2]`.
        #[serde(deserialize_with = "scalars_as_text")]
        #[schemars(with = "Vec<String>")]
        argv: Vec<String>,
    },
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
        "command",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            Work::Spin => "spin",
            Work::Periodic { .. } => "periodic",
            Work::Pingpong => "pingpong",
            Work::WakeChain => "wake_chain",
            Work::ForkExit => "fork_exit",
            Work::Yield => "yield",
            Work::Sleepy { .. } => "sleepy",
            Work::Command { .. } => "command",
        }
    }
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
}

impl Property {
    /// Its name in YAML: `nice_weights`, `cgroup_weights`.
    pub fn name(self) -> &'static str {
        match self {
            Property::NiceWeights => "nice_weights",
            Property::CgroupWeights => "cgroup_weights",
            Property::Interactive => "interactive",
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
    /// orderly exit, nr_rejected did not change, and the kernel printed no
    /// crash pattern.
    SchedulerHealthy(HealthyCheck),
    /// Each scheduler change of `swaps`: the new scheduler attached, and
    /// the longest wakeup-to-run delay that ended from the change until one
    /// second after the attach stayed under `max_delay`.
    Swap(SwapCheck),
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
}

impl Check {
    pub const KINDS: &'static [&'static str] = &[
        "run_delay",
        "stall",
        "share",
        "throughput",
        "scheduler_healthy",
        "swap",
    ];

    /// The property it guards, if any (stall and health checks guard
    /// what every scheduler owes).
    pub fn property(&self) -> Option<Property> {
        match self {
            Check::RunDelay(c) => c.property,
            Check::Share(c) => c.property,
            Check::Throughput(c) => c.property,
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
        }
    }

    /// True if evaluating it needs the same scenario under the fair class
    /// in the same VM.
    pub fn needs_fair_baseline(&self) -> bool {
        match self {
            Check::RunDelay(r) => !r.fair_bounds().is_empty(),
            Check::Share(s) => s.min_of_fair.is_some(),
            Check::Throughput(t) => t.min_of_fair.is_some(),
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
    /// Bound only the scheduler's own part of each wait (`higher_class`:
    /// less the time the task's CPU ran RT, deadline or stop tasks
    /// meanwhile).
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
    /// Bound only the scheduler's own part of each wait (`higher_class`:
    /// less the time the task's CPU ran RT, deadline or stop tasks). Not
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
    /// first, whatever the scheduler does. What is left is the
    /// scheduler's own part.
    HigherClass,
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
        .contains("tolerance goes with by_weight"));
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
