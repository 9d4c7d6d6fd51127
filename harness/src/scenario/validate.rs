//! Rejecting impossible scenarios before a VM starts: each rule is a plain
//! early return with one message that names the file, the line of the
//! offending group or check, what is wrong, and what is allowed.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::{Check, Group, Ready, Scenario, Work, HINT, MAX_DURATION, MAX_GROUPS, MAX_THREADS};
use crate::datafile::line_of;
use crate::units::format_duration;

/// Where in the text an error belongs.
enum At<'a> {
    Key(&'a str),
    Group(&'a str),
    Check(usize),
    /// The i-th entry of a top-level list (`timeline:`, `cgroups:`).
    Entry(&'a str, usize),
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
            At::Check(i) => list_line(self.text, "checks", i),
            At::Entry(key, i) => list_line(self.text, key, i),
        };
        let place = match line {
            Some(l) => format!("{}:{l}", self.path.display()),
            None => self.path.display().to_string(),
        };
        crate::datafile::error_at(&place, &msg.to_string(), HINT)
    }
}

/// The line of the `i`-th entry of the top-level list `key` (`checks`).
fn list_line(text: &str, key: &str, i: usize) -> Option<usize> {
    let start = text
        .lines()
        .position(|l| l.starts_with(&format!("{key}:")))?;
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

const CGROUP_PATH_RULE: &str = "1 to 4 levels separated by '/', each of letters, digits, '-', '_' and '.' (as systemd names `app.slice/web.scope`), none starting with \"harness.\" or '.'";

/// A cgroup path of a scenario: `a`, `app.slice/web.scope`.
pub fn cgroup_path(p: &str) -> bool {
    let levels: Vec<&str> = p.split('/').collect();
    levels.len() <= 4
        && levels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 64
                && !l.starts_with('.')
                && !l.starts_with("harness.")
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        })
}

fn cpu_max(cx: &Ctx, at: At, what: &str, m: &super::CpuMax) -> Result<()> {
    let ms = Duration::from_millis(1);
    if m.quota < ms || m.period < ms || m.period > Duration::from_secs(1) {
        return Err(cx.err(
            at,
            format!(
                "{what} cpu.max quota {} per period {}: the quota at least 1ms, the period 1ms to 1s (the kernel's limits)",
                format_duration(m.quota),
                format_duration(m.period)
            ),
        ));
    }
    Ok(())
}

/// A name a scenario or group may have: 1 to 64 letters, digits, '-'
/// and '_'.
pub fn plain_name(s: &str) -> bool {
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
    for (i, r) in s.recorded.iter().enumerate() {
        let at = At::Entry("recorded", i);
        if s.group(&r.group).is_none() {
            return Err(cx.err(
                at,
                format!(
                    "recorded[{i}]: group {:?} is not a group of this scenario\n  fix: name one of the groups, or remove the entry",
                    r.group
                ),
            ));
        }
        let shares_ok = r.woken_by.iter().all(|w| (0.0..=1.0).contains(&w.share));
        if !(r.cpus_busy >= 0.0 && r.bursts_per_s >= 0.0 && shares_ok) {
            return Err(cx.err(
                at,
                format!(
                    "recorded[{i}] ({}): cpus_busy and bursts_per_s are 0 or more, woken_by shares 0 to 1\n  fix: keep what `scx-harness record` wrote",
                    r.group
                ),
            ));
        }
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
    if let Some(t) = &s.vm.topology {
        if t.sockets == 0 || t.cores == 0 || t.threads == 0 || t.cpus() != s.vm.cpus {
            return Err(cx.err(
                At::Key("vm"),
                format!(
                    "vm.topology: {} socket(s) x {} core(s) x {} thread(s) = {} CPUs, but vm.cpus is {}\n  fix: make the product vm.cpus",
                    t.sockets,
                    t.cores,
                    t.threads,
                    t.cpus(),
                    s.vm.cpus
                ),
            ));
        }
        let mib = memory_bytes(&s.vm.memory).unwrap_or(0) >> 20;
        if t.numa && (t.sockets < 2 || !mib.is_multiple_of(u64::from(t.sockets))) {
            return Err(cx.err(
                At::Key("vm"),
                format!(
                    "vm.topology: numa wants at least 2 sockets and memory ({} MiB) that splits evenly among them",
                    mib
                ),
            ));
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
    levels(&cx, s)?;
    knobs(&cx, s)?;
    for (i, op) in s.timeline.iter().enumerate() {
        timeline_op(&cx, s, i, op)?;
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

/// Every cgroup path the scenario makes: its groups' and its `cgroups:`
/// levels', with every parent of each.
pub fn cgroup_paths(s: &Scenario) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    let named = s
        .groups
        .iter()
        .filter_map(|g| g.cgroup.as_ref().map(|c| c.name.as_str()))
        .chain(s.cgroups.iter().map(|l| l.path.as_str()));
    for p in named {
        let mut cur = String::new();
        for level in p.split('/') {
            if !cur.is_empty() {
                cur.push('/');
            }
            cur.push_str(level);
            if !all.contains(&cur) {
                all.push(cur.clone());
            }
        }
    }
    all
}

fn levels(cx: &Ctx, s: &Scenario) -> Result<()> {
    for (i, l) in s.cgroups.iter().enumerate() {
        let at = || At::Entry("cgroups", i);
        if !cgroup_path(&l.path) {
            return Err(cx.err(
                at(),
                format!("cgroups: path {:?}: {CGROUP_PATH_RULE}", l.path),
            ));
        }
        if s.cgroups[..i].iter().any(|o| o.path == l.path) {
            return Err(cx.err(at(), format!("cgroups: {:?} is listed twice", l.path)));
        }
        if let Some(w) = l.weight {
            if !(1..=10_000).contains(&w) {
                return Err(cx.err(
                    at(),
                    format!("cgroups: {}: weight {w} is not between 1 and 10000", l.path),
                ));
            }
            if let Some(g) = s.groups.iter().find(|g| {
                g.cgroup
                    .as_ref()
                    .is_some_and(|c| c.name == l.path && c.weight != w)
            }) {
                return Err(cx.err(
                    at(),
                    format!(
                        "cgroups: {}: weight {w} here and another in group {}\n  fix: give the weight in one place",
                        l.path, g.name
                    ),
                ));
            }
        }
        if let Some(m) = &l.max {
            cpu_max(cx, at(), &format!("cgroups: {}:", l.path), m)?;
        }
    }
    Ok(())
}

fn knobs(cx: &Ctx, s: &Scenario) -> Result<()> {
    for (name, value) in &s.knobs {
        let ok = name.split('.').count() >= 2
            && name.split('.').all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if !ok {
            return Err(cx.err(
                At::Key("knobs"),
                format!(
                    "knobs: {name:?} is not a sysctl name\n  fix: write it as sysctl does, e.g. kernel.sched_rt_runtime_us (the file /proc/sys/kernel/sched_rt_runtime_us)"
                ),
            ));
        }
        let text = value.text();
        if text.is_empty() || text.contains('\n') {
            return Err(cx.err(
                At::Key("knobs"),
                format!("knobs: {name}: the value must be one line of text or a number"),
            ));
        }
    }
    Ok(())
}

fn timeline_op(cx: &Ctx, s: &Scenario, i: usize, op: &super::Op) -> Result<()> {
    use super::timeline::{Action, CpuChoice};
    let at = || At::Entry("timeline", i);
    let actions = op.actions();
    if actions.len() != 1 {
        return Err(cx.err(
            at(),
            format!(
                "timeline: an entry does exactly one of {}; this one does {}",
                super::Op::KINDS.join(", "),
                if actions.is_empty() {
                    "none".to_string()
                } else {
                    actions
                        .iter()
                        .map(|a| a.kind())
                        .collect::<Vec<_>>()
                        .join(" and ")
                }
            ),
        ));
    }
    let action = actions[0];
    let kind = action.kind();
    if op.at >= s.duration {
        return Err(cx.err(
            at(),
            format!(
                "timeline: {kind} at {} is not before the end of the run ({})",
                format_duration(op.at),
                format_duration(s.duration)
            ),
        ));
    }
    if let Some(every) = op.every {
        if every < Duration::from_millis(10) {
            return Err(cx.err(
                at(),
                format!(
                    "timeline: {kind} every {}: at least 10ms (the agent's timer granularity under TCG)",
                    format_duration(every)
                ),
            ));
        }
    }
    if let Some(until) = op.until {
        if op.every.is_none() || until < op.at || until > s.duration {
            return Err(cx.err(
                at(),
                format!(
                    "timeline: {kind} until {}: only with `every`, not before `at` ({}) and not after the end of the run ({})",
                    format_duration(until),
                    format_duration(op.at),
                    format_duration(s.duration)
                ),
            ));
        }
    }
    let group = match action.group() {
        Some(g) => Some(known_group(cx, at(), s, &format!("timeline: {kind}"), g)?),
        None => None,
    };
    if let Some(g) = group {
        if matches!(g.work, Work::Command { .. }) {
            return Err(cx.err(
                at(),
                format!(
                    "timeline: {kind} on group {}, a command: its program's own processes are not the group's tasks, so the change would miss them\n  fix: change the command's own arguments (e.g. wrap it in chrt, taskset or nice), or use a work kind",
                    g.name
                ),
            ));
        }
    }
    let paths = cgroup_paths(s);
    let leaf = |c: &str| !paths.iter().any(|p| p.starts_with(&format!("{c}/")));
    let known_cgroup = |c: &str| -> Result<()> {
        if paths.iter().any(|p| p == c) {
            return Ok(());
        }
        Err(cx.err(
            at(),
            format!(
                "timeline: {kind}: no cgroup {c:?} in the scenario (its cgroups: {})\n  fix: name it in a group's `cgroup:` or in `cgroups:`",
                if paths.is_empty() {
                    "none".to_string()
                } else {
                    paths.join(", ")
                }
            ),
        ))
    };
    let cpus = s.vm.cpus;
    match action {
        Action::Affinity(a) => {
            if let CpuChoice::List(list) = &a.cpus {
                if list.is_empty() {
                    return Err(cx.err(
                        at(),
                        "timeline: affinity: cpus is empty; a task needs a CPU",
                    ));
                }
                if let Some(c) = list.iter().find(|c| **c >= cpus) {
                    return Err(cx.err(
                        at(),
                        format!(
                            "timeline: affinity: CPU {c}, but the VM has {cpus} (CPUs 0 to {})",
                            cpus - 1
                        ),
                    ));
                }
            }
            let g = group.expect("affinity names a group");
            if let Some(n) = a.tasks {
                if n == 0 || n > g.threads {
                    return Err(cx.err(
                        at(),
                        format!(
                            "timeline: affinity: tasks {n}: 1 to the group's {} (leave it out for every task)",
                            g.threads
                        ),
                    ));
                }
            }
        }
        Action::Nice(n) => {
            if !(-20..=19).contains(&n.nice) {
                return Err(cx.err(
                    at(),
                    format!("timeline: nice {} is not between -20 and 19", n.nice),
                ));
            }
        }
        Action::Policy(p) => match (p.policy.is_realtime(), p.priority) {
            (true, Some(pr)) if (1..=crate::sched::MAX_TASK_PRIORITY).contains(&pr) => {}
            (true, _) => {
                return Err(cx.err(
                    at(),
                    format!(
                        "timeline: policy {} needs a priority from 1 to {}",
                        p.policy.name(),
                        crate::sched::MAX_TASK_PRIORITY
                    ),
                ))
            }
            (false, Some(_)) => {
                return Err(cx.err(
                    at(),
                    format!(
                        "timeline: policy {} takes no priority (only fifo and rr do)",
                        p.policy.name()
                    ),
                ))
            }
            (false, None) => {}
        },
        Action::Move(m) => {
            if m.to.is_empty() {
                return Err(cx.err(at(), "timeline: move: `to` lists no cgroup"));
            }
            for c in &m.to {
                known_cgroup(c)?;
                if !leaf(c) {
                    return Err(cx.err(
                        at(),
                        format!(
                            "timeline: move to {c}, which has cgroups below it: cgroup v2 puts tasks in leaves only (with the cpu controller on below it, the kernel refuses with EBUSY)"
                        ),
                    ));
                }
            }
        }
        Action::Weight(w) => {
            known_cgroup(&w.cgroup)?;
            if !(1..=10_000).contains(&w.weight) {
                return Err(cx.err(
                    at(),
                    format!("timeline: weight {} is not between 1 and 10000", w.weight),
                ));
            }
        }
        Action::CpuMax(m) => {
            known_cgroup(&m.cgroup)?;
            if let Some(max) = m.max() {
                cpu_max(cx, at(), "timeline:", &max)?;
            }
        }
        Action::Churn(c) => {
            if let Some(p) = &c.parent {
                known_cgroup(p)?;
                if let Some(g) = s
                    .groups
                    .iter()
                    .find(|g| g.cgroup.as_ref().is_some_and(|gc| &gc.name == p))
                {
                    return Err(cx.err(
                        at(),
                        format!(
                            "timeline: churn under {p}, group {}'s cgroup: cgroup v2 puts tasks in leaves only\n  fix: make it under the cgroup's parent",
                            g.name
                        ),
                    ));
                }
            }
            if c.tasks == 0 || c.tasks > 64 {
                return Err(cx.err(at(), format!("timeline: churn: tasks {}: 1 to 64", c.tasks)));
            }
            if c.life.is_zero() || op.every.is_some_and(|e| c.life >= e) {
                return Err(cx.err(
                    at(),
                    format!(
                        "timeline: churn: life {}: more than 0 and shorter than `every`",
                        format_duration(c.life)
                    ),
                ));
            }
        }
        Action::Hotplug(h) => {
            if h.cpu == 0 || h.cpu >= cpus {
                return Err(cx.err(
                    at(),
                    format!(
                        "timeline: hotplug: CPU {}: 1 to {} (CPU 0 stays online; the VM has {cpus})",
                        h.cpu,
                        cpus.saturating_sub(1)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A `by_weight` share's window and weights: inside the run, at least a
/// second long (four samples), no weight changing inside it, and groups in
/// cgroups compared only with their siblings (cpu.weight splits a parent's
/// share among its children).
fn share_window(
    cx: &Ctx,
    s: &Scenario,
    i: usize,
    sh: &super::ShareCheck,
    groups: &[String],
) -> Result<()> {
    let at = || At::Check(i);
    let (from, to) = (sh.from.unwrap_or(s.warmup), sh.to.unwrap_or(s.duration));
    if to > s.duration || to < from + Duration::from_secs(1) {
        return Err(cx.err(
            at(),
            format!(
                "share: from {} to {}: at least 1s long, inside the run ({})",
                format_duration(from),
                format_duration(to),
                format_duration(s.duration)
            ),
        ));
    }
    let listed: Vec<&Group> = groups.iter().filter_map(|g| s.group(g)).collect();
    for op in &s.timeline {
        // A compared group's own cgroup (a change above it, shared by
        // both, leaves their split alone).
        let in_listed_cgroup = |c: &str| {
            listed
                .iter()
                .any(|g| g.cgroup.as_ref().is_some_and(|gc| gc.name == c))
        };
        let touches = match op.action() {
            super::Action::Weight(w) => in_listed_cgroup(&w.cgroup),
            super::Action::CpuMax(m) => in_listed_cgroup(&m.cgroup),
            // Tasks moved into a compared group's cgroup share its weight
            // without being counted as the group's.
            super::Action::Move(m) => {
                groups.iter().any(|l| l == &m.group) || m.to.iter().any(|c| in_listed_cgroup(c))
            }
            super::Action::Churn(c) => c.parent.as_deref().is_some_and(in_listed_cgroup),
            a => a.group().is_some_and(|g| groups.iter().any(|l| l == g)),
        };
        if let Some(t) = op
            .times(s.duration)
            .into_iter()
            .find(|t| touches && *t > from && *t < to)
        {
            return Err(cx.err(
                at(),
                format!(
                    "share: the timeline changes a compared group or its cgroup at {} inside {}-{}\n  fix: judge the parts before and after with `from` and `to`",
                    format_duration(t),
                    format_duration(from),
                    format_duration(to)
                ),
            ));
        }
    }
    if let Some(g) = listed.iter().find(|g| {
        !matches!(
            g.policy,
            super::Policy::Other | super::Policy::Batch | super::Policy::Ext
        ) || g.cgroup.as_ref().is_some_and(|c| c.max.is_some())
    }) {
        return Err(cx.err(
            at(),
            format!(
                "share: by_weight compares weights, but group {} has policy {} or a cpu.max: its share is not its weight's",
                g.name,
                g.policy.name()
            ),
        ));
    }
    let parent = |g: &Group| {
        g.cgroup
            .as_ref()
            .map(|c| c.name.rsplit_once('/').map_or("", |(p, _)| p).to_string())
    };
    let parents: Vec<Option<String>> = listed.iter().map(|g| parent(g)).collect();
    if parents.iter().any(|p| *p != parents[0]) {
        return Err(cx.err(
            at(),
            "share: by_weight compares groups whose cgroups are siblings (the same parent), or groups without cgroups: cpu.weight splits a parent's share among its children",
        ));
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
    match (g.policy.is_realtime(), g.priority) {
        (true, None) => {
            return Err(cx.err(
                at(),
                format!(
                    "group {name}: policy {} needs a priority\n  fix: add `priority: N`, 1 to {}",
                    g.policy.name(),
                    crate::sched::MAX_TASK_PRIORITY
                ),
            ))
        }
        (true, Some(p)) if !(1..=crate::sched::MAX_TASK_PRIORITY).contains(&p) => {
            return Err(cx.err(
                at(),
                format!(
                    "group {name}: priority {p} is not between 1 and {} (98 and 99 are the harness's: the scheduler loader and the agent's watch must outrank every task)",
                    crate::sched::MAX_TASK_PRIORITY
                ),
            ))
        }
        (false, Some(p)) => {
            return Err(cx.err(
                at(),
                format!(
                    "group {name}: priority {p} with policy {}: only fifo and rr take a priority\n  fix: set `policy: fifo` or `rr`, or remove the priority",
                    g.policy.name()
                ),
            ))
        }
        _ => {}
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
        if !cgroup_path(&cg.name) {
            return Err(cx.err(
                at(),
                format!(
                    "group {name}: cgroup name {:?}: {CGROUP_PATH_RULE}",
                    cg.name
                ),
            ));
        }
        if let Some(m) = &cg.max {
            cpu_max(cx, at(), &format!("group {name}: cgroup"), m)?;
        }
        let below = format!("{}/", cg.name);
        if let Some(p) = cgroup_paths(s).into_iter().find(|p| p.starts_with(&below)) {
            return Err(cx.err(
                at(),
                format!(
                    "group {name}: cgroup {} has a cgroup below it ({p}): cgroup v2 puts tasks in leaves only\n  fix: give the group a cgroup of its own, e.g. {}/{name}",
                    cg.name, cg.name
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
    work(cx, g)?;
    couplings(cx, s, g)
}

/// A `replay` group's `woken_by`: each a `replay` group of the scenario,
/// named once, with a share over 0 and at most 1; the shares together at
/// most 1.
fn couplings(cx: &Ctx, s: &Scenario, g: &Group) -> Result<()> {
    let Work::Replay { woken_by, .. } = &g.work else {
        return Ok(());
    };
    let at = || At::Group(&g.name);
    let name = &g.name;
    for (i, c) in woken_by.iter().enumerate() {
        let what = format!("group {name}: woken_by {}", i + 1);
        let by = known_group(cx, at(), s, &what, &c.group)?;
        if !matches!(by.work, Work::Replay { .. }) {
            return Err(cx.err(
                at(),
                format!(
                    "{what}: group {} is a {} group; only a replay group's tasks wake others (at the end of a burst)\n  fix: name a replay group, or drop the coupling",
                    c.group,
                    by.work.kind()
                ),
            ));
        }
        if !(c.share > 0.0 && c.share <= 1.0) {
            return Err(cx.err(
                at(),
                format!(
                    "{what}: share {} is not over 0 and at most 1\n  fix: the share of the group's sleeps that {} ends, e.g. 0.5",
                    c.share, c.group
                ),
            ));
        }
        if c.group == *name && g.threads < 2 {
            return Err(cx.err(
                at(),
                format!(
                    "{what}: group {name} has one thread, which cannot wake itself\n  fix: drop the coupling, or give the group more threads"
                ),
            ));
        }
        if woken_by[..i].iter().any(|d| d.group == c.group) {
            return Err(cx.err(
                at(),
                format!(
                    "{what}: group {} is named twice\n  fix: one entry per waking group, with the shares added",
                    c.group
                ),
            ));
        }
    }
    let total: f64 = woken_by.iter().map(|c| c.share).sum();
    // Shares are written with 3 decimals: their sum may round past 1.
    if total > 1.001 {
        return Err(cx.err(
            at(),
            format!(
                "group {name}: woken_by's shares add up to {total:.3}, more than all of its sleeps\n  fix: shares that add up to at most 1"
            ),
        ));
    }
    Ok(())
}

/// The shortest `timers` interval: 10 us, a 100 kHz timer per task.
const MIN_TIMER_INTERVAL: Duration = Duration::from_micros(10);

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
        Work::Pingpong { .. } if !g.threads.is_multiple_of(2) => {
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
        Work::Replay {
            run,
            sleep,
            run_mean,
            sleep_mean,
            ..
        } => {
            for (field, q, mean) in [("run", run, run_mean), ("sleep", sleep, sleep_mean)] {
                if !(2..=101).contains(&q.len()) {
                    return Err(cx.err(
                        at(),
                        format!(
                            "group {name}: replay {field} has {} quantile(s); a distribution is 2 to 101 of them, least first\n  fix: e.g. {field}: [100us, 1ms, 5ms] (minimum, median, maximum)",
                            q.len()
                        ),
                    ));
                }
                if let Some(w) = q.windows(2).position(|w| w[1] < w[0]) {
                    return Err(cx.err(
                        at(),
                        format!(
                            "group {name}: replay {field} is not in order: quantile {} ({}) is below quantile {} ({})\n  fix: list the quantiles least first",
                            w + 2,
                            format_duration(q[w + 1]),
                            w + 1,
                            format_duration(q[w])
                        ),
                    ));
                }
                let (first, last) = (q[0], q[q.len() - 1]);
                if let Some(m) = mean.filter(|m| *m < first || *m > last) {
                    return Err(cx.err(
                        at(),
                        format!(
                            "group {name}: replay {field}_mean {} is outside its quantiles ({} to {})\n  fix: give the mean of the recorded {what}, or leave {field}_mean out",
                            format_duration(m),
                            format_duration(first),
                            format_duration(last),
                            what = if field == "run" { "bursts" } else { "sleeps" },
                        ),
                    ));
                }
            }
            if sleep.iter().all(Duration::is_zero) && run.iter().all(Duration::is_zero) {
                return Err(cx.err(
                    at(),
                    format!("group {name}: replay run and sleep are all 0: nothing to replay\n  fix: give the recorded distributions"),
                ));
            }
        }
        Work::FanOut {
            workers,
            run,
            interval,
        } => {
            if *workers == 0 || !g.threads.is_multiple_of(workers + 1) {
                return Err(cx.err(
                    at(),
                    format!(
                        "group {name}: fan_out rings are 1 message task and {workers} workers; threads {} is not a multiple of {}\n  fix: threads = rings x (workers + 1), e.g. {}",
                        g.threads,
                        workers + 1,
                        4 * (workers + 1)
                    ),
                ));
            }
            if run >= interval || interval.is_zero() {
                return Err(cx.err(
                    at(),
                    format!(
                        "group {name}: fan_out run {} must be less than the interval {}",
                        format_duration(*run),
                        format_duration(*interval)
                    ),
                ));
            }
        }
        Work::Messaging { size } => {
            if g.threads < 2 || !g.threads.is_multiple_of(2) {
                return Err(cx.err(
                    at(),
                    format!(
                        "group {name}: messaging needs senders and receivers, half each: threads {} is not an even number of at least 2",
                        g.threads
                    ),
                ));
            }
            if !(1..=4096).contains(size) {
                return Err(cx.err(
                    at(),
                    format!("group {name}: messaging size {size}: 1 to 4096 bytes"),
                ));
            }
        }
        Work::Jobs {
            min_run,
            max_run,
            min_gap,
            max_gap,
        } if min_run.is_zero() || min_run > max_run || min_gap > max_gap => {
            return Err(cx.err(
                    at(),
                    format!(
                        "group {name}: jobs: min_run ({}) above 0 and at most max_run ({}), min_gap ({}) at most max_gap ({})",
                        format_duration(*min_run),
                        format_duration(*max_run),
                        format_duration(*min_gap),
                        format_duration(*max_gap)
                    ),
                ));
        }
        Work::Timers { interval } if *interval < MIN_TIMER_INTERVAL => {
            return Err(cx.err(
                at(),
                format!(
                    "group {name}: timers interval {} is below {}\n  fix: a longer interval (a shorter one only counts overruns, under TCG most of all)",
                    format_duration(*interval),
                    format_duration(MIN_TIMER_INTERVAL)
                ),
            ));
        }
        Work::BlockIo { size } if *size % 512 != 0 || !(512..=1 << 20).contains(size) => {
            return Err(cx.err(
                at(),
                format!(
                    "group {name}: block_io size {size}: a multiple of 512 bytes from 512 to 1048576 (O_DIRECT needs whole sectors)\n  fix: size: 4096"
                ),
            ));
        }
        Work::Command {
            argv,
            exit,
            server,
            metrics,
        } => {
            let mut programs = vec![("command", argv)];
            if let Some(s) = server {
                programs.push(("command server", &s.argv));
            }
            for (what, argv) in programs {
                let Some(program) = argv.first() else {
                    return Err(cx.err(at(), format!("group {name}: {what} argv is empty")));
                };
                if find_program(program).is_none() {
                    return Err(cx.err(
                        at(),
                        format!(
                            "group {name}: {what} program {program:?} is not installed (not found on PATH; the guest sees the host's files)\n  \
                             fix: install it (`cargo ci setup` installs the bundled scenarios' programs) or give its full path"
                        ),
                    ));
                }
            }
            if let Some(code) = exit.filter(|c| !(0..=255).contains(c)) {
                return Err(cx.err(
                    at(),
                    format!("group {name}: exit {code}: an exit status is 0 to 255"),
                ));
            }
            if let Some(s) = server {
                if g.threads != 1 {
                    return Err(cx.err(
                        at(),
                        format!(
                            "group {name}: a server serves one instance of the program, not threads {}\n  \
                             fix: threads: 1 (the load generator's own options make its clients)",
                            g.threads
                        ),
                    ));
                }
                let scratch = format!("${}/", crate::workload::app::SCRATCH_ENV);
                match &s.ready {
                    Ready::Line(p) => {
                        if let Err(e) = regex::Regex::new(p) {
                            return Err(
                                cx.err(at(), format!("group {name}: server ready line {p:?}: {e}"))
                            );
                        }
                    }
                    Ready::File(f) if !f.starts_with('/') && !f.starts_with(&scratch) => {
                        return Err(cx.err(
                            at(),
                            format!(
                                "group {name}: server ready file {f:?}: an absolute path, or one under the instance's scratch directory\n  \
                                 fix: ready: {{ file: {scratch}server.sock }}"
                            ),
                        ));
                    }
                    Ready::Port(0) => {
                        return Err(cx.err(at(), format!("group {name}: server ready port 0")));
                    }
                    _ => {}
                }
            }
            if !metrics.is_empty() {
                if exit.is_none() {
                    return Err(cx.err(
                        at(),
                        format!(
                            "group {name}: metrics are read once the program exits by itself, and `exit` is not given\n  \
                             fix: exit: 0 (and arguments that make it end before the group's stop)"
                        ),
                    ));
                }
                if g.threads != 1 {
                    return Err(cx.err(
                        at(),
                        format!(
                            "group {name}: metrics need one instance of the program, not threads {}\n  \
                             fix: threads: 1 (the program's own options make its threads or processes), or one group per instance",
                            g.threads
                        ),
                    ));
                }
            }
            let mut seen = std::collections::BTreeSet::new();
            for m in metrics {
                if let Err(e) = m.validate() {
                    return Err(cx.err(at(), format!("group {name}: {e}")));
                }
                if !seen.insert(&m.name) {
                    return Err(cx.err(
                        at(),
                        format!("group {name}: metric {} is declared twice", m.name),
                    ));
                }
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

/// Scenario group `g`, or an error at `at` that lists the groups there are.
fn known_group<'s>(cx: &Ctx, at: At, s: &'s Scenario, what: &str, g: &str) -> Result<&'s Group> {
    s.group(g).ok_or_else(|| {
        cx.err(
            at,
            format!(
                "{what}: no group {g:?}; the groups are {}",
                s.groups
                    .iter()
                    .map(|g| g.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

fn check(cx: &Ctx, s: &Scenario, i: usize, c: &Check) -> Result<()> {
    let at = || At::Check(i);
    let kind = c.kind();
    let known = |g: &str| known_group(cx, at(), s, kind, g);
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
                    if sh.tolerance.is_some() || sh.from.is_some() || sh.to.is_some() {
                        return Err(cx.err(
                            at(),
                            "share: tolerance, from and to go with by_weight, not min_of_fair",
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
                    share_window(cx, s, i, sh, groups)?;
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
        Check::AppMetric(a) => {
            let g = known(&a.group)?;
            let declared = match &g.work {
                Work::Command { metrics, .. } => metrics,
                _ => {
                    return Err(cx.err(
                        at(),
                        format!(
                            "app_metric: group {} runs no command, so it reports no metrics",
                            g.name
                        ),
                    ))
                }
            };
            if !declared.iter().any(|m| m.name == a.metric) {
                let names: Vec<&str> = declared.iter().map(|m| m.name.as_str()).collect();
                return Err(cx.err(
                    at(),
                    format!(
                        "app_metric: group {} declares no metric {:?}\n  fix: {}",
                        g.name,
                        a.metric,
                        if names.is_empty() {
                            "declare it in the group's `metrics:`".to_string()
                        } else {
                            format!("one of: {}", names.join(", "))
                        }
                    ),
                ));
            }
            if a.min.is_none()
                && a.max.is_none()
                && a.min_of_fair.is_none()
                && a.max_of_fair.is_none()
            {
                return Err(cx.err(
                    at(),
                    "app_metric: give min, max, min_of_fair or max_of_fair",
                ));
            }
            for (what, f) in [
                ("min_of_fair", a.min_of_fair),
                ("max_of_fair", a.max_of_fair),
            ] {
                if let Some(f) = f {
                    fraction(what, f, 1000.0)?;
                }
            }
            for (lo, hi, what) in [
                (a.min, a.max, "min and max"),
                (a.min_of_fair, a.max_of_fair, "min_of_fair and max_of_fair"),
            ] {
                if let (Some(lo), Some(hi)) = (lo, hi) {
                    if lo > hi {
                        return Err(cx.err(
                            at(),
                            format!("app_metric: {what}: {lo} is above {hi}, so nothing passes"),
                        ));
                    }
                }
            }
        }
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
        assert_eq!(list_line(text, "checks", 0), Some(3));
        assert_eq!(list_line(text, "checks", 1), Some(5));
        assert_eq!(list_line(text, "checks", 2), None);
    }
}
