//! What a metric of a measured run is: its name (as results, `compare.json`
//! and the history database spell it), its unit, which way is better, and
//! whether it is a key metric (one `compare --runs auto` waits to settle).
//! One definition that `compare`, `history`, the reports and the CLI read;
//! names from files are parsed back into a [`Metric`] here, never guessed
//! from prefixes elsewhere.

use std::time::Duration;

use crate::stats::Better;

/// The statistic of a group's run delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DelayStat {
    P50,
    P99,
    Max,
}

impl DelayStat {
    pub const ALL: [DelayStat; 3] = [DelayStat::P50, DelayStat::P99, DelayStat::Max];

    fn label(self) -> &'static str {
        match self {
            DelayStat::P50 => "p50",
            DelayStat::P99 => "p99",
            DelayStat::Max => "max",
        }
    }
}

/// One metric of a run's scheduler pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metric {
    /// `run_delay.GROUP.p50|p99|max`, ns.
    RunDelay { group: String, stat: DelayStat },
    /// `stall_max`: the longest wait of any task of the scenario, ns.
    StallMax,
    /// `stall_max.guest`: the longest wait of any other task of the guest
    /// (a guest-wide stall watch), ns.
    StallMaxGuest,
    /// `cpu_share.GROUP`: the fraction of the VM's CPU time.
    CpuShare { group: String },
    /// `throughput.GROUP`: iterations per second in the window.
    Throughput { group: String },
    /// `sched_ext_event.NAME`: one of the kernel's sched_ext event counters
    /// over the attachment (7.3: fallbacks, dispatches to offline CPUs,
    /// bypass time, ...).
    SchedExtEvent { name: String },
    /// `app.GROUP.NAME`: a number a `command` group's program reported
    /// (its declared `metrics:`); its unit and direction are the
    /// declaration's, which results carry ([`Declared`]).
    App { group: String, name: String },
}

/// How a metric's value is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Nanos,
    Fraction,
    PerSecond,
    /// A number of events.
    Count,
    /// A number in a unit only its declaration knows: four significant
    /// digits.
    Plain,
}

impl Unit {
    /// The value for a person: "1.20s", "12.5%", "830/s", "3".
    pub fn show(self, v: f64) -> String {
        if !v.is_finite() {
            return "-".into();
        }
        match self {
            Unit::Nanos => crate::report::short(Duration::from_nanos(v.max(0.0) as u64)),
            Unit::Fraction => format!("{:.1}%", v * 100.0),
            Unit::PerSecond => format!("{v:.0}/s"),
            Unit::Count => format!("{v:.0}"),
            Unit::Plain => {
                let digits = if v == 0.0 {
                    0
                } else {
                    (3 - v.abs().log10().floor() as i32).clamp(0, 6) as usize
                };
                format!("{v:.digits$}")
            }
        }
    }
}

impl Metric {
    /// Its name in results and the history database.
    pub fn name(&self) -> String {
        match self {
            Metric::RunDelay { group, stat } => format!("run_delay.{group}.{}", stat.label()),
            Metric::StallMax => "stall_max".into(),
            Metric::StallMaxGuest => "stall_max.guest".into(),
            Metric::CpuShare { group } => format!("cpu_share.{group}"),
            Metric::Throughput { group } => format!("throughput.{group}"),
            Metric::SchedExtEvent { name } => format!("sched_ext_event.{name}"),
            Metric::App { group, name } => format!("app.{group}.{name}"),
        }
    }

    /// The metric a name stands for; `None` for a name no version of the
    /// harness wrote.
    pub fn parse(name: &str) -> Option<Metric> {
        if name == "stall_max" {
            return Some(Metric::StallMax);
        }
        if name == "stall_max.guest" {
            return Some(Metric::StallMaxGuest);
        }
        let (kind, rest) = name.split_once('.')?;
        let group = || rest.to_string();
        Some(match kind {
            "run_delay" => {
                let (group, stat) = rest.rsplit_once('.')?;
                let stat = DelayStat::ALL.into_iter().find(|s| s.label() == stat)?;
                Metric::RunDelay {
                    group: group.to_string(),
                    stat,
                }
            }
            "cpu_share" => Metric::CpuShare { group: group() },
            "throughput" => Metric::Throughput { group: group() },
            "sched_ext_event" => Metric::SchedExtEvent { name: group() },
            "app" => {
                let (group, name) = rest.rsplit_once('.')?;
                Metric::App {
                    group: group.to_string(),
                    name: name.to_string(),
                }
            }
            _ => return None,
        })
    }

    /// Which way is better: less waiting, more work; a CPU share is a
    /// change, not better or worse; fewer of the kernel's fallback events.
    pub fn better(&self) -> Better {
        match self {
            Metric::RunDelay { .. }
            | Metric::StallMax
            | Metric::StallMaxGuest
            | Metric::SchedExtEvent { .. } => Better::Lower,
            Metric::CpuShare { .. } => Better::Neither,
            Metric::Throughput { .. } => Better::Higher,
            // Its declaration says; without it, neither.
            Metric::App { .. } => Better::Neither,
        }
    }

    /// A key metric: what `--runs auto` waits to settle and what makes a
    /// candidate worse (run-delay p50 and p99, throughput, an
    /// application's own numbers).
    pub fn key(&self) -> bool {
        matches!(
            self,
            Metric::RunDelay {
                stat: DelayStat::P50 | DelayStat::P99,
                ..
            } | Metric::Throughput { .. }
                | Metric::App { .. }
        )
    }

    pub fn unit(&self) -> Unit {
        match self {
            Metric::RunDelay { .. } | Metric::StallMax | Metric::StallMaxGuest => Unit::Nanos,
            Metric::CpuShare { .. } => Unit::Fraction,
            Metric::Throughput { .. } => Unit::PerSecond,
            Metric::SchedExtEvent { .. } => Unit::Count,
            Metric::App { .. } => Unit::Plain,
        }
    }
}

/// Application metrics' declarations (direction, unit), by metric name
/// (`app.GROUP.NAME`), as the results being read carry them: what
/// [`kind`] cannot know from a name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Declared(std::collections::BTreeMap<String, (Better, String)>);

impl Declared {
    /// Adds `name`'s declaration; the first one seen stays.
    pub fn add(&mut self, name: String, better: Better, unit: &str) {
        self.0.entry(name).or_insert((better, unit.to_string()));
    }

    /// [`kind`], with a declared metric's own direction.
    pub fn kind(&self, name: &str) -> (Better, bool, Unit) {
        let (better, key, unit) = kind(name);
        match self.0.get(name) {
            Some((b, _)) => (*b, key, unit),
            None => (better, key, unit),
        }
    }

    /// A declared metric's unit, or "" for the others.
    pub fn unit(&self, name: &str) -> &str {
        self.0.get(name).map_or("", |(_, u)| u.as_str())
    }
}

/// A value of metric `name` for a person; `unit` is an application
/// metric's declared unit ("" for the harness's own metrics, whose names
/// say theirs).
pub fn show(name: &str, unit: &str, v: f64) -> String {
    let shown = kind(name).2.show(v);
    if unit.is_empty() || !v.is_finite() {
        shown
    } else {
        format!("{shown} {unit}")
    }
}

/// What a metric's name says about it (direction, key, unit); a name no
/// version wrote is shown as a count, never a key metric, better neither
/// way.
pub fn kind(name: &str) -> (Better, bool, Unit) {
    match Metric::parse(name) {
        Some(m) => (m.better(), m.key(), m.unit()),
        None => (Better::Neither, false, Unit::Count),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_parses_back_from_its_name() {
        let all = [
            Metric::RunDelay {
                group: "a.b".into(),
                stat: DelayStat::P99,
            },
            Metric::StallMax,
            Metric::StallMaxGuest,
            Metric::CpuShare { group: "x".into() },
            Metric::Throughput { group: "x".into() },
            Metric::SchedExtEvent {
                name: "SCX_EV_BYPASS_DURATION".into(),
            },
            Metric::App {
                group: "redis.1".into(),
                name: "rps".into(),
            },
        ];
        for m in all {
            assert_eq!(Metric::parse(&m.name()), Some(m.clone()), "{}", m.name());
        }
        assert_eq!(Metric::parse("run_delay.g.p42"), None);
        assert_eq!(Metric::parse("nonsense"), None);
    }

    #[test]
    fn the_guest_wide_stall_is_a_wait_not_a_rate() {
        // It was read as a throughput (higher is better, key) by a prefix
        // match that only knew `stall_max`.
        let (better, key, unit) = kind("stall_max.guest");
        assert_eq!((better, key, unit), (Better::Lower, false, Unit::Nanos));
        assert_eq!(
            kind("run_delay.pairs.p50"),
            (Better::Lower, true, Unit::Nanos)
        );
        assert!(!kind("run_delay.pairs.max").1);
        assert_eq!(kind("cpu_share.hog").0, Better::Neither);
    }

    #[test]
    fn an_application_metric_reads_as_declared() {
        let mut d = Declared::default();
        d.add("app.redis.rps".into(), Better::Higher, "req/s");
        assert_eq!(d.kind("app.redis.rps"), (Better::Higher, true, Unit::Plain));
        // Undeclared: key, but neither way better.
        assert_eq!(kind("app.build.wall"), (Better::Neither, true, Unit::Plain));
        assert_eq!(
            show("app.redis.rps", d.unit("app.redis.rps"), 81234.7),
            "81235 req/s"
        );
        assert_eq!(show("app.h.time", "s", 0.012341), "0.01234 s");
        assert_eq!(show("throughput.x", "", 830.2), "830/s");
    }
}
