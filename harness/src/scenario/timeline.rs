//! Changes made while a scenario's tasks run (`timeline:`), the kernel
//! settings it runs with (`knobs:`) and the cgroup levels above its
//! groups (`cgroups:`): the types, and the schedule of one run (which
//! operation happens when, and to which of a group's tasks, from the seed).

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{DurationText, Policy};
use crate::units::duration_str;

/// One operation of the timeline: at `at`, and again every `every` until
/// `until` (or the end of the run). Exactly one of the operation keys
/// (`affinity`, `nice`, `policy`, `move`, `weight`, `cpu_max`, `churn`,
/// `hotplug`) is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Op {
    /// When it happens first, from the start of the run.
    #[serde(with = "duration_str")]
    #[schemars(with = "DurationText")]
    pub at: Duration,
    /// Repeat at this interval. Default: once.
    #[serde(
        default,
        with = "duration_str::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationText>")]
    pub every: Option<Duration>,
    /// No repeat after this time. Default: the end of the run.
    #[serde(
        default,
        with = "duration_str::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationText>")]
    pub until: Option<Duration>,
    /// Set the CPU affinity of the group's tasks (`sched_setaffinity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<AffinityOp>,
    /// Set the nice level of the group's tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nice: Option<NiceOp>,
    /// Set the scheduling policy of the group's tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyOp>,
    /// Move the group's processes to another cgroup.
    #[serde(default, rename = "move", skip_serializing_if = "Option::is_none")]
    pub move_to: Option<MoveOp>,
    /// Set a cgroup's `cpu.weight`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<WeightOp>,
    /// Set a cgroup's `cpu.max` (bandwidth: quota per period).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_max: Option<CpuMaxOp>,
    /// Create a cgroup, run spinning processes in it, and remove it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub churn: Option<ChurnOp>,
    /// Take a CPU offline or bring it back (`/sys/devices/system/cpu/cpuN/online`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hotplug: Option<HotplugOp>,
}

/// What an [`Op`] does, borrowed from it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action<'a> {
    Affinity(&'a AffinityOp),
    Nice(&'a NiceOp),
    Policy(&'a PolicyOp),
    Move(&'a MoveOp),
    Weight(&'a WeightOp),
    CpuMax(&'a CpuMaxOp),
    Churn(&'a ChurnOp),
    Hotplug(&'a HotplugOp),
}

impl Op {
    /// The operation keys, for error messages.
    pub const KINDS: &'static [&'static str] = &[
        "affinity", "nice", "policy", "move", "weight", "cpu_max", "churn", "hotplug",
    ];

    /// Every operation key given (validation wants exactly one).
    pub fn actions(&self) -> Vec<Action<'_>> {
        let mut a = Vec::new();
        a.extend(self.affinity.as_ref().map(Action::Affinity));
        a.extend(self.nice.as_ref().map(Action::Nice));
        a.extend(self.policy.as_ref().map(Action::Policy));
        a.extend(self.move_to.as_ref().map(Action::Move));
        a.extend(self.weight.as_ref().map(Action::Weight));
        a.extend(self.cpu_max.as_ref().map(Action::CpuMax));
        a.extend(self.churn.as_ref().map(Action::Churn));
        a.extend(self.hotplug.as_ref().map(Action::Hotplug));
        a
    }

    /// Its one operation (validated).
    pub fn action(&self) -> Action<'_> {
        self.actions()[0]
    }

    /// The times it happens in a run of `run`, from its start.
    pub fn times(&self, run: Duration) -> Vec<Duration> {
        let until = self.until.unwrap_or(run).min(run);
        match self.every {
            None => vec![self.at],
            Some(every) if every.is_zero() => vec![self.at],
            Some(every) => {
                let mut t = Vec::new();
                let mut at = self.at;
                while at <= until && at < run {
                    t.push(at);
                    at += every;
                }
                t
            }
        }
    }
}

impl Action<'_> {
    /// Its key in YAML.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::Affinity(_) => "affinity",
            Action::Nice(_) => "nice",
            Action::Policy(_) => "policy",
            Action::Move(_) => "move",
            Action::Weight(_) => "weight",
            Action::CpuMax(_) => "cpu_max",
            Action::Churn(_) => "churn",
            Action::Hotplug(_) => "hotplug",
        }
    }

    /// The scenario group it acts on, if it acts on one.
    pub fn group(&self) -> Option<&str> {
        match self {
            Action::Affinity(a) => Some(&a.group),
            Action::Nice(a) => Some(&a.group),
            Action::Policy(a) => Some(&a.group),
            Action::Move(a) => Some(&a.group),
            _ => None,
        }
    }
}

/// CPUs for an affinity change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum CpuChoice {
    /// These CPUs (below `vm.cpus`).
    List(Vec<u32>),
    /// `random`: a non-empty subset of the VM's CPUs, drawn from the seed
    /// for each task each time; `all`: every CPU.
    Word(CpuWord),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CpuWord {
    Random,
    All,
}

impl<'de> Deserialize<'de> for CpuChoice {
    /// A list of CPU numbers, `random` or `all`, with an error that says so.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = serde_yaml::Value::deserialize(d)?;
        let want = "cpus: a list of CPU numbers ([0, 1]), `random` or `all`";
        match v {
            serde_yaml::Value::Sequence(_) => Vec::<u32>::deserialize(v)
                .map(CpuChoice::List)
                .map_err(|e| D::Error::custom(format!("{want}: {e}"))),
            serde_yaml::Value::String(w) => match w.as_str() {
                "random" => Ok(CpuChoice::Word(CpuWord::Random)),
                "all" => Ok(CpuChoice::Word(CpuWord::All)),
                _ => Err(D::Error::custom(format!("{want}, not {w:?}"))),
            },
            _ => Err(D::Error::custom(want)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AffinityOp {
    pub group: String,
    /// A list of CPUs, `random` or `all`.
    pub cpus: CpuChoice,
    /// Change only this many of the group's tasks, a subset drawn from the
    /// seed each time. Default: every task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NiceOp {
    pub group: String,
    /// -20 to 19.
    pub nice: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyOp {
    pub group: String,
    pub policy: Policy,
    /// 1 to 97, for fifo and rr only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveOp {
    pub group: String,
    /// Cgroups (paths as groups' `cgroup.name` write them): the k-th time
    /// the operation happens, the group moves to the k-th of them, round
    /// and round.
    pub to: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WeightOp {
    /// A cgroup path of the scenario (a group's `cgroup.name` or an entry
    /// of `cgroups:`).
    pub cgroup: String,
    /// 1 to 10000.
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CpuMaxOp {
    pub cgroup: String,
    /// CPU time per period, at least 1ms; leave it out to lift the limit
    /// (`max`).
    #[serde(
        default,
        with = "duration_str::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationText>")]
    pub quota: Option<Duration>,
    /// 1ms to 1s. Default: 100ms (the kernel's).
    #[serde(default = "default_period", with = "duration_str")]
    #[schemars(with = "DurationText")]
    pub period: Duration,
}

impl CpuMaxOp {
    /// The limit it sets, None to lift it.
    pub fn max(&self) -> Option<CpuMax> {
        self.quota.map(|quota| CpuMax {
            quota,
            period: self.period,
        })
    }
}

/// A cgroup's CPU bandwidth limit: `quota` of CPU time per `period`
/// (cgroup v2 `cpu.max`), over all its CPUs together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CpuMax {
    /// At least 1ms.
    #[serde(with = "duration_str")]
    #[schemars(with = "DurationText")]
    pub quota: Duration,
    /// 1ms to 1s. Default: 100ms (the kernel's).
    #[serde(default = "default_period", with = "duration_str")]
    #[schemars(with = "DurationText")]
    pub period: Duration,
}

fn default_period() -> Duration {
    Duration::from_millis(100)
}

impl CpuMax {
    /// As `cpu.max` takes it: "QUOTA_US PERIOD_US".
    pub fn text(&self) -> String {
        format!("{} {}", self.quota.as_micros(), self.period.as_micros())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChurnOp {
    /// Spinning processes started in the new cgroup. Default: 1.
    #[serde(default = "one")]
    pub tasks: u32,
    /// How long the cgroup lives, populated, before its processes are
    /// killed and it is removed.
    #[serde(with = "duration_str")]
    #[schemars(with = "DurationText")]
    pub life: Duration,
    /// The cgroup it is made in (a path of the scenario). Default: the
    /// scenario's own top.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HotplugOp {
    /// 1 to vm.cpus - 1 (CPU 0 cannot go offline on x86).
    pub cpu: u32,
    pub online: bool,
}

/// A cgroup level of the scenario, to set `cpu.weight` or `cpu.max` on a
/// level no group names directly (a systemd slice above its scopes), or to
/// create one that a `move` targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CgroupLevel {
    /// Its path under the scenario's top, components separated by '/'
    /// (`app.slice`, `app.slice/web.scope`).
    pub path: String,
    /// cpu.weight, 1 to 10000. Default: the kernel's (100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
    /// cpu.max. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<CpuMax>,
}

/// Kernel settings for the run: a sysctl name (`kernel.sched_rt_runtime_us`,
/// the file under /proc/sys with '.' for '/') and the value written there;
/// each is read before the run and written back after it.
pub type Knobs = BTreeMap<String, KnobValue>;

/// A knob's value: a number or text, written as text (a boolean as 1 or 0).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum KnobValue {
    Number(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for KnobValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match serde_yaml::Value::deserialize(d)? {
            serde_yaml::Value::Number(n) => Ok(match n.as_i64() {
                Some(i) => KnobValue::Number(i),
                None => KnobValue::Text(n.to_string()),
            }),
            serde_yaml::Value::String(t) => Ok(KnobValue::Text(t)),
            serde_yaml::Value::Bool(b) => Ok(KnobValue::Number(i64::from(b))),
            _ => Err(D::Error::custom(
                "a knob's value is a number or one line of text (what the file under /proc/sys takes)",
            )),
        }
    }
}

impl KnobValue {
    pub fn text(&self) -> String {
        match self {
            KnobValue::Number(n) => n.to_string(),
            KnobValue::Text(t) => t.clone(),
        }
    }
}

/// The file of sysctl `name` under /proc/sys.
pub fn knob_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new("/proc/sys").join(name.replace('.', "/"))
}
