//! Rejecting impossible scenarios before a VM starts: each rule is a plain
//! early return with one message that names the file, the line of the
//! offending group or check, what is wrong, and what is allowed.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::{Check, Group, Scenario, Work, HINT, MAX_DURATION, MAX_GROUPS, MAX_THREADS};
use crate::datafile::line_of;
use crate::units::format_duration;

/// Where in the text an error belongs.
enum At<'a> {
    Key(&'a str),
    Group(&'a str),
    Check(usize),
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn err(&self, at: At, msg: impl std::fmt::Display) -> anyhow::Error {
        let line = match at {
            At::Key(k) => self
                .text
                .lines()
                .position(|l| l.trim_start().starts_with(&format!("{k}:")))
                .map(|i| i + 1),
            At::Group(g) => line_of(self.text, "name", g),
            At::Check(i) => check_line(self.text, i),
        };
        let place = match line {
            Some(l) => format!("{}:{l}", self.path.display()),
            None => self.path.display().to_string(),
        };
        crate::datafile::error_at(&place, &msg.to_string(), HINT)
    }
}

/// The line of the `i`-th entry of the top-level `checks:` list.
fn check_line(text: &str, i: usize) -> Option<usize> {
    let start = text.lines().position(|l| l.starts_with("checks:"))?;
    let mut indent = None;
    let mut n = 0;
    for (k, l) in text.lines().enumerate().skip(start + 1) {
        let trimmed = l.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let ind = l.len() - trimmed.len();
        if ind == 0 && !trimmed.starts_with('-') {
            break; // the next top-level key
        }
        if trimmed.starts_with("- ") && *indent.get_or_insert(ind) == ind {
            if n == i {
                return Some(k + 1);
            }
            n += 1;
        }
    }
    None
}

fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// QEMU's memory syntax: a number with an optional K, M, G or T suffix.
pub fn memory_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        'T' | 't' => (&s[..s.len() - 1], 1 << 40),
        _ => (s, 1 << 20), // QEMU reads a bare number as MiB
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

pub fn validate(path: &Path, text: &str, s: &Scenario) -> Result<()> {
    let cx = Ctx { path, text };
    if !plain_name(&s.name) {
        return Err(cx.err(
            At::Key("name"),
            format!("name {:?}: use letters, digits, '-' and '_'", s.name),
        ));
    }
    if s.description.trim().is_empty() {
        return Err(cx.err(
            At::Key("description"),
            "description is empty: say what behaviour the scenario guards",
        ));
    }
    if !(1..=64).contains(&s.vm.cpus) {
        return Err(cx.err(
            At::Key("vm"),
            format!("vm.cpus {}: between 1 and 64", s.vm.cpus),
        ));
    }
    match memory_bytes(&s.vm.memory) {
        Some(b) if b >= 256 << 20 => {}
        _ => {
            return Err(cx.err(
                At::Key("vm"),
                format!(
                    "vm.memory {:?}: a size of at least 256M, such as \"512M\" or \"2G\"",
                    s.vm.memory
                ),
            ))
        }
    }
    if s.duration.is_zero() || s.duration > MAX_DURATION {
        return Err(cx.err(
            At::Key("duration"),
            format!(
                "duration {}: more than 0 and at most {}",
                format_duration(s.duration),
                format_duration(MAX_DURATION)
            ),
        ));
    }
    if s.warmup >= s.duration {
        return Err(cx.err(
            At::Key("warmup"),
            format!(
                "warmup {} is not shorter than the duration {}: nothing would be measured",
                format_duration(s.warmup),
                format_duration(s.duration)
            ),
        ));
    }
    if s.groups.is_empty() {
        return Err(cx.err(
            At::Key("groups"),
            "groups is empty: a scenario runs at least one group",
        ));
    }
    if s.groups.len() > MAX_GROUPS {
        return Err(cx.err(
            At::Key("groups"),
            format!("{} groups: at most {MAX_GROUPS}", s.groups.len()),
        ));
    }
    let total: u64 = s.groups.iter().map(|g| u64::from(g.threads)).sum();
    if total > u64::from(MAX_THREADS) {
        return Err(cx.err(
            At::Key("groups"),
            format!("{total} threads in all: at most {MAX_THREADS}"),
        ));
    }
    for (i, g) in s.groups.iter().enumerate() {
        if s.groups[..i].iter().any(|o| o.name == g.name) {
            return Err(cx.err(
                At::Group(&g.name),
                format!("group {:?} is named twice", g.name),
            ));
        }
        group(&cx, s, g)?;
    }
    let mut last = Duration::ZERO;
    for sw in &s.swaps {
        if sw.at <= last || sw.at >= s.duration {
            return Err(cx.err(
                At::Key("swaps"),
                format!(
                    "swap at {}: swaps come in order, after 0s and before the end of the run ({})",
                    format_duration(sw.at),
                    format_duration(s.duration)
                ),
            ));
        }
        if sw.to.trim().is_empty() {
            return Err(cx.err(
                At::Key("swaps"),
                "a swap needs `to`: a scheduler name, or `cell`",
            ));
        }
        last = sw.at;
    }
    let mut healthy = 0;
    for (i, c) in s.checks.iter().enumerate() {
        if matches!(c, Check::SchedulerHealthy(_)) {
            healthy += 1;
            if healthy > 1 {
                return Err(cx.err(At::Check(i), "scheduler_healthy is listed twice"));
            }
        }
        check(&cx, s, i, c)?;
    }
    Ok(())
}

fn group(cx: &Ctx, s: &Scenario, g: &Group) -> Result<()> {
    let at = || At::Group(&g.name);
    let name = &g.name;
    if !plain_name(name) {
        return Err(cx.err(
            at(),
            format!("group name {name:?}: use letters, digits, '-' and '_'"),
        ));
    }
    if g.threads == 0 {
        return Err(cx.err(
            at(),
            format!("group {name}: threads is 0; a group has at least 1"),
        ));
    }
    if !(-20..=19).contains(&g.nice) {
        return Err(cx.err(
            at(),
            format!("group {name}: nice {} is not between -20 and 19", g.nice),
        ));
    }
    let comm = g.comm();
    if comm.is_empty() || comm.len() > 15 || comm.contains('/') {
        return Err(cx.err(
            at(),
            format!("group {name}: comm {comm:?}: 1 to 15 bytes, no '/' (TASK_COMM_LEN is 16)"),
        ));
    }
    if let Some(cpus) = &g.cpus {
        if cpus.is_empty() {
            return Err(cx.err(
                at(),
                format!("group {name}: cpus is empty; leave it out to allow all"),
            ));
        }
        if let Some(c) = cpus.iter().find(|c| **c >= s.vm.cpus) {
            return Err(cx.err(
                at(),
                format!(
                    "group {name}: cpus lists CPU {c}, but the VM has {} (CPUs 0 to {})",
                    s.vm.cpus,
                    s.vm.cpus - 1
                ),
            ));
        }
        let mut sorted = cpus.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != cpus.len() {
            return Err(cx.err(at(), format!("group {name}: cpus lists a CPU twice")));
        }
    }
    if let Some(cg) = &g.cgroup {
        if !plain_name(&cg.name) {
            return Err(cx.err(
                at(),
                format!(
                    "group {name}: cgroup name {:?}: use letters, digits, '-' and '_'",
                    cg.name
                ),
            ));
        }
        if !(1..=10_000).contains(&cg.weight) {
            return Err(cx.err(
                at(),
                format!(
                    "group {name}: cgroup weight {} is not between 1 and 10000",
                    cg.weight
                ),
            ));
        }
        let other = s.groups.iter().find(|o| {
            o.cgroup
                .as_ref()
                .is_some_and(|oc| oc.name == cg.name && oc.weight != cg.weight)
        });
        if let Some(o) = other {
            return Err(cx.err(
                at(),
                format!(
                    "group {name}: cgroup {:?} has weight {} here and another in group {}",
                    cg.name, cg.weight, o.name
                ),
            ));
        }
    }
    let (start, stop) = (g.start(), g.stop(s.duration));
    if stop > s.duration {
        return Err(cx.err(
            at(),
            format!(
                "group {name}: stop {} is after the end of the run ({})",
                format_duration(stop),
                format_duration(s.duration)
            ),
        ));
    }
    if start >= stop {
        return Err(cx.err(
            at(),
            format!(
                "group {name}: start {} is not before stop {}",
                format_duration(start),
                format_duration(stop)
            ),
        ));
    }
    work(cx, g)
}

fn work(cx: &Ctx, g: &Group) -> Result<()> {
    let at = || At::Group(&g.name);
    let name = &g.name;
    match &g.work {
        Work::Periodic { run, period } if run.is_zero() || run >= period => {
            return Err(cx.err(
                at(),
                format!(
                    "group {name}: periodic run {} must be more than 0 and less than the period {}",
                    format_duration(*run),
                    format_duration(*period)
                ),
            ));
        }
        Work::Pingpong if !g.threads.is_multiple_of(2) => {
            return Err(cx.err(
                at(),
                format!(
                    "group {name}: pingpong runs in pairs; threads {} is odd",
                    g.threads
                ),
            ));
        }
        Work::WakeChain if g.threads < 2 => {
            return Err(cx.err(
                at(),
                format!("group {name}: a wake_chain needs at least 2 threads"),
            ));
        }
        Work::Sleepy {
            min_sleep,
            max_sleep,
            ..
        } if min_sleep > max_sleep => {
            return Err(cx.err(
                at(),
                format!(
                    "group {name}: sleepy min_sleep {} is above max_sleep {}",
                    format_duration(*min_sleep),
                    format_duration(*max_sleep)
                ),
            ));
        }
        Work::Command { argv } => {
            let Some(program) = argv.first() else {
                return Err(cx.err(at(), format!("group {name}: command argv is empty")));
            };
            if find_program(program).is_none() {
                return Err(cx.err(
                    at(),
                    format!(
                        "group {name}: command program {program:?} is not installed (not found on PATH; the guest sees the host's files)\n  \
                         fix: install it (stress-ng comes with `cargo ci setup`) or give its full path"
                    ),
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// A program as the guest would find it: a path, or a name on PATH.
pub fn find_program(program: &str) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        let p = std::path::PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    crate::vng::which(program)
}

fn check(cx: &Ctx, s: &Scenario, i: usize, c: &Check) -> Result<()> {
    let at = || At::Check(i);
    let kind = c.kind();
    let known = |g: &str| -> Result<&Group> {
        s.group(g).ok_or_else(|| {
            cx.err(
                at(),
                format!(
                    "{kind}: no group {g:?}; the groups are {}",
                    s.groups
                        .iter()
                        .map(|g| g.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
    };
    let measured = |g: &Group| -> Result<()> {
        if g.stop(s.duration) <= s.warmup {
            return Err(cx.err(
                at(),
                format!(
                    "{kind}: group {} stops at {}, before the warm-up ends ({}): nothing of it is measured",
                    g.name,
                    format_duration(g.stop(s.duration)),
                    format_duration(s.warmup)
                ),
            ));
        }
        Ok(())
    };
    let fraction = |what: &str, v: f64, max: f64| -> Result<()> {
        if !(v > 0.0 && v <= max) {
            return Err(cx.err(
                at(),
                format!("{kind}: {what} {v} must be above 0 and at most {max}"),
            ));
        }
        Ok(())
    };
    match c {
        Check::RunDelay(rd) => {
            let g = known(&rd.group)?;
            measured(g)?;
            let bounds = rd.bounds();
            let relative = rd.fair_bounds();
            if bounds.is_empty() && relative.is_empty() {
                return Err(cx.err(
                    at(),
                    "run_delay: give at least one of p50, p90, p99, p999, max (absolute) or p50_of_fair ... max_of_fair (times the fair class's)",
                ));
            }
            for (label, _, f) in &relative {
                fraction(&format!("{}_of_fair", label.replace('.', "")), *f, 1000.0)?;
            }
            if rd.floor.is_some() && relative.is_empty() {
                return Err(cx.err(
                    at(),
                    "run_delay: floor bounds the relative bounds from below; there is no *_of_fair bound\n  \
                     fix: add one (p99_of_fair: 2) or drop floor",
                ));
            }
            for w in bounds.windows(2) {
                if w[0].2 > w[1].2 {
                    return Err(cx.err(
                        at(),
                        format!(
                            "run_delay: {} {} is above {} {}: a higher percentile cannot be lower",
                            w[0].0,
                            format_duration(w[0].2),
                            w[1].0,
                            format_duration(w[1].2)
                        ),
                    ));
                }
            }
        }
        Check::Stall(st) => {
            if st.max_runnable < Duration::from_millis(1) {
                return Err(cx.err(at(), "stall: max_runnable must be at least 1ms"));
            }
            if st.excluding.is_some() && st.tasks == crate::scenario::StallTasks::Guest {
                return Err(cx.err(
                    at(),
                    "stall: excluding and tasks: guest do not go together (a task outside the scenario has no split of its waits)\n  \
                     fix: one stall check with excluding for the scenario's tasks, and one with tasks: guest",
                ));
            }
            if let Some(g) = &st.group {
                known(g)?;
                if st.tasks == crate::scenario::StallTasks::Guest {
                    return Err(cx.err(
                        at(),
                        "stall: group and tasks: guest do not go together (a group is the scenario's; the guest's tasks are every task)\n  \
                         fix: one stall check per group, and one with tasks: guest",
                    ));
                }
            }
        }
        Check::Share(sh) => {
            match (&sh.group, sh.min_of_fair, &sh.by_weight) {
                (Some(g), Some(f), None) => {
                    measured(known(g)?)?;
                    fraction("min_of_fair", f, 10.0)?;
                    if sh.tolerance.is_some() {
                        return Err(cx.err(
                            at(),
                            "share: tolerance goes with by_weight, not min_of_fair",
                        ));
                    }
                }
                (None, None, Some(groups)) => {
                    if groups.len() < 2 {
                        return Err(cx.err(at(), "share: by_weight compares at least 2 groups"));
                    }
                    for g in groups {
                        let g = known(g)?;
                        measured(g)?;
                        if !matches!(g.work, Work::Spin) {
                            return Err(cx.err(
                                at(),
                                format!(
                                    "share: by_weight needs busy groups (work spin); {} does {}",
                                    g.name,
                                    g.work.kind()
                                ),
                            ));
                        }
                    }
                    fraction("tolerance", sh.tolerance.unwrap_or(0.25), 1.0)?;
                }
                _ => return Err(cx.err(
                    at(),
                    "share: give either group with min_of_fair, or by_weight with a list of groups",
                )),
            }
        }
        Check::Throughput(t) => {
            let g = known(&t.group)?;
            measured(g)?;
            if matches!(g.work, Work::Command { .. }) {
                return Err(cx.err(
                    at(),
                    format!(
                        "throughput: group {} runs a command, whose iterations are not counted",
                        g.name
                    ),
                ));
            }
            if t.min_per_sec.is_none() && t.min_of_fair.is_none() {
                return Err(cx.err(at(), "throughput: give min_per_sec or min_of_fair"));
            }
            if let Some(m) = t.min_per_sec {
                if !(m > 0.0 && m.is_finite()) {
                    return Err(
                        cx.err(at(), format!("throughput: min_per_sec {m} must be above 0"))
                    );
                }
            }
            if let Some(f) = t.min_of_fair {
                fraction("min_of_fair", f, 10.0)?;
            }
        }
        Check::SchedulerHealthy(_) => {}
        Check::Swap(_) if s.swaps.is_empty() => {
            return Err(cx.err(at(), "swap: the scenario has no swaps to check"));
        }
        Check::Swap(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes() {
        assert_eq!(memory_bytes("2G"), Some(2 << 30));
        assert_eq!(memory_bytes("512M"), Some(512 << 20));
        assert_eq!(memory_bytes("1024"), Some(1024 << 20));
        assert_eq!(memory_bytes("lots"), None);
    }

    #[test]
    fn check_lines_are_found() {
        let text = "name: x\nchecks:\n  - stall: { max_runnable: 1s }\n  # note\n  - run_delay:\n      group: a\n      by_weight:\n        - a\ngroups: []\n";
        assert_eq!(check_line(text, 0), Some(3));
        assert_eq!(check_line(text, 1), Some(5));
        assert_eq!(check_line(text, 2), None);
    }
}
