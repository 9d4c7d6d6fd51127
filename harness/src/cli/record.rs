//! `scx-harness record`: what a machine's threads do, recorded with BPF
//! on the running kernel (no sched_ext needed), written as a scenario of
//! `replay` groups (`crate::record` summarises, `record::capture` records).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::error::{fail, Failure};
use crate::record::capture::{self, Scope};
use crate::record::{GroupBy, Log, Thread, ThreadInfo};
use crate::units::parse_positive_duration;

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["pids", "cgroup", "comm", "all", "scenario"])))]
pub struct RecordArgs {
    /// Record these processes' threads (and the processes they start
    /// while recorded). Several: `--pid 12 --pid 34` or `--pid 12,34`.
    #[arg(long = "pid", value_name = "PID", value_delimiter = ',')]
    pub pids: Vec<u32>,
    /// Record the threads of this cgroup v2 and those below it: a path
    /// under /sys/fs/cgroup, or as /proc/PID/cgroup shows it
    /// (`/system.slice/nginx.service`).
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<String>,
    /// Record the threads whose comm matches this regular expression.
    #[arg(long, value_name = "REGEX")]
    pub comm: Option<String>,
    /// Record every thread of the machine (kernel threads too).
    #[arg(long)]
    pub all: bool,
    /// Record a scenario (a file or a bundled name) running in a VM of
    /// `--kernel` under the fair class: its groups' tasks, recorded in
    /// the guest, each group of the file one group of the capture (the
    /// ground truth a replay is checked against). Its own duration, not
    /// --duration; its VM's CPUs, not --cpus.
    #[arg(long, value_name = "SCENARIO", conflicts_with_all = ["duration", "cpus", "group_by", "anonymize"])]
    pub scenario: Option<String>,
    /// With --scenario: the kernel of the VM, as for `run --kernel`
    /// (default: the catalog's default).
    #[arg(long, value_name = "NAME|PATH|KEY")]
    pub kernel: Option<String>,
    /// How long to record, at most 1h (a scenario's limit; Ctrl-C ends
    /// it sooner: what was recorded is written).
    #[arg(long, default_value = "30s", value_parser = recording_length)]
    pub duration: Duration,
    /// The scenario file to write.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// How threads are put into the scenario's groups.
    #[arg(long, value_enum, default_value_t = GroupBy::Comm)]
    pub group_by: GroupBy,
    /// Name the groups g1, g2, ... and keep no comm.
    #[arg(long)]
    pub anonymize: bool,
    /// The replay's vCPUs, 1 to 64 (default: the CPUs this process may
    /// run on, at most 64).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub cpus: Option<u32>,
    /// The scenario's name (default: the output file's name without
    /// `.yaml`).
    #[arg(long)]
    pub name: Option<String>,
}

/// A recording's length: positive, and at most a scenario's longest.
fn recording_length(text: &str) -> Result<Duration, String> {
    let d = parse_positive_duration(text)?;
    if d > crate::scenario::MAX_DURATION {
        return Err(format!(
            "{text}: longer than a scenario may run ({}); record at most that",
            crate::units::format_duration(crate::scenario::MAX_DURATION)
        ));
    }
    Ok(d)
}

fn bad(msg: String) -> anyhow::Error {
    fail(Failure::BadInput, msg)
}

/// The tgid of thread or process `pid`.
fn tgid_of(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))?
        .trim()
        .parse()
        .ok()
}

/// `tgids` and every process below them now (the BPF side adds those
/// forked later).
fn with_descendants(mut tgids: Vec<u32>) -> Vec<u32> {
    for root in tgids.clone() {
        for d in crate::process::descendants(root as i32) {
            if !tgids.contains(&(d as u32)) {
                tgids.push(d as u32);
            }
        }
    }
    tgids
}

/// The cgroup v2 mount point (/proc/mounts), /sys/fs/cgroup if none is
/// found.
fn cgroup2_root() -> String {
    std::fs::read_to_string("/proc/mounts")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2) == Some(&"cgroup2")).then(|| f[1].to_string())
            })
        })
        .unwrap_or_else(|| "/sys/fs/cgroup".into())
}

/// The selection, checked, as the BPF side's scope and a filter of
/// recorded threads.
enum Selection {
    Tgids(Vec<u32>),
    Cgroup(String),
    Comm(regex::Regex),
    All,
}

impl Selection {
    fn from(args: &RecordArgs) -> Result<Selection> {
        if !args.pids.is_empty() {
            let mut tgids = Vec::new();
            for pid in &args.pids {
                let tgid = tgid_of(*pid).ok_or_else(|| {
                    bad(format!(
                        "--pid {pid}: no such process\n  fix: name a running process (`pgrep NAME`)"
                    ))
                })?;
                if !tgids.contains(&tgid) {
                    tgids.push(tgid);
                }
            }
            return Ok(Selection::Tgids(with_descendants(tgids)));
        }
        if let Some(c) = &args.cgroup {
            // Where cgroup v2 is mounted: /sys/fs/cgroup, or
            // /sys/fs/cgroup/unified on a hybrid host.
            let root = cgroup2_root();
            let rel = c
                .strip_prefix(&root)
                .or_else(|| c.strip_prefix("/sys/fs/cgroup"))
                .unwrap_or(c);
            let rel = format!("/{}", rel.trim_matches('/'));
            let dir = Path::new(&root).join(rel.trim_start_matches('/'));
            if !dir.join("cgroup.procs").is_file() {
                return Err(bad(format!(
                    "--cgroup {c}: {} is not a cgroup v2\n  fix: name one under {root}, as the `0::` line of /proc/PID/cgroup shows it",
                    dir.display()
                )));
            }
            return Ok(Selection::Cgroup(rel));
        }
        if let Some(re) = &args.comm {
            let r = regex::Regex::new(re).map_err(|e| {
                bad(format!(
                    "--comm {re:?}: not a regular expression: {e}\n  fix: e.g. --comm '^(nginx|redis)'"
                ))
            })?;
            return Ok(Selection::Comm(r));
        }
        Ok(Selection::All)
    }

    fn scope(&self) -> Scope<'_> {
        match self {
            Selection::Tgids(t) => Scope::Tgids(t),
            _ => Scope::All,
        }
    }

    fn keeps(&self, t: &Thread, me: u32) -> bool {
        if t.tgid == me || t.tid == 0 {
            return false;
        }
        match self {
            // The BPF side recorded only these and their children.
            Selection::Tgids(_) | Selection::All => true,
            Selection::Cgroup(c) => {
                t.info.cgroup == *c || c == "/" || t.info.cgroup.starts_with(&format!("{c}/"))
            }
            Selection::Comm(r) => r.is_match(&t.info.comm),
        }
    }

    fn says(&self) -> String {
        match self {
            Selection::Tgids(t) => format!(
                "process(es) {}",
                t.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            ),
            Selection::Cgroup(c) => format!("cgroup {c}"),
            Selection::Comm(r) => format!("threads whose comm matches {:?}", r.as_str()),
            Selection::All => "every thread".into(),
        }
    }
}

/// Why this machine cannot record, if it cannot.
fn preflight() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(fail(
            Failure::Infrastructure,
            "record loads BPF programs, which needs root\n  fix: run it as root (sudo)".to_string(),
        ));
    }
    if !Path::new("/sys/kernel/btf/vmlinux").is_file() {
        return Err(fail(
            Failure::Infrastructure,
            "this kernel has no BTF (/sys/kernel/btf/vmlinux): the recorder's CO-RE reads of the trace events need it\n  fix: a kernel built with CONFIG_DEBUG_INFO_BTF=y (Debian's are)".to_string(),
        ));
    }
    Ok(())
}

/// Records, summarises and writes the scenario; the exit code (0).
pub fn run(args: RecordArgs) -> Result<i32> {
    // (clap's `requires` is not checked beside the required selection
    // group, so it is said here.)
    if let (Some(k), None) = (&args.kernel, &args.scenario) {
        return Err(bad(format!(
            "--kernel {k}: this machine's own kernel is what --pid, --comm, --cgroup and --all record\n  fix: leave --kernel out, or record a scenario in a VM of it with --scenario NAME --kernel {k}"
        )));
    }
    let name = match &args.name {
        Some(n) => n.clone(),
        None => args
            .output
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_else(|| "recorded".into()),
    };
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(bad(format!(
            "scenario name {name:?}: 1 to 64 letters, digits, '-' and '_'\n  fix: --name NAME, or an output file named that way"
        )));
    }
    let parent = args
        .output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !parent.is_dir() {
        return Err(bad(format!(
            "-o {}: {} is not a directory\n  fix: make it, or write elsewhere",
            args.output.display(),
            parent.display()
        )));
    }
    if let Some(scenario) = &args.scenario {
        return record_scenario(&args, scenario, &name);
    }
    let selection = Selection::from(&args)?;
    preflight()?;
    let me = std::process::id();
    let log = std::cell::RefCell::new(Log::default());
    // When the programs were attached, CLOCK_MONOTONIC ns.
    let started = std::cell::Cell::new(None::<u64>);
    let known = match &selection {
        Selection::Tgids(t) => t.clone(),
        _ => crate::probe::pids_of_guest(),
    };
    eprintln!(
        "recording {} for {} (Ctrl-C ends it sooner)",
        selection.says(),
        crate::units::format_duration(args.duration)
    );
    let mut progress = crate::progress::Progress::new("record");
    let recorded = capture::record(
        selection.scope(),
        args.duration,
        // The threads there at the start, with their CPU times then (a
        // thread that never blocks makes no event: a hog is found here).
        || {
            started.set(Some(crate::probe::now_ns()));
            let mut log = log.borrow_mut();
            for tgid in known {
                for tid in crate::probe::tids_of(tgid) {
                    if let Some(info) = ThreadInfo::read(tid) {
                        log.known(tid, tgid, info);
                    }
                }
            }
            Vec::new()
        },
        |e| log.borrow_mut().add(e, ThreadInfo::read),
        |t| {
            progress.detail(&format!("{:.0} s recorded", t.as_secs_f64()));
            true
        },
    )
    .map_err(|e| fail(Failure::Infrastructure, format!("{e:#}")))?;
    drop(progress);
    let mut log = log.into_inner();
    log.close(crate::record::read_cpu_ns, ThreadInfo::read);
    let seconds = recorded.elapsed.as_secs_f64();
    log.span = started
        .get()
        .map(|s| (s, s + recorded.elapsed.as_nanos() as u64));
    log.online = crate::record::online_cpus();
    let (groups, left) = crate::record::summarise(
        &log,
        |t| selection.keeps(t, me),
        args.group_by,
        args.anonymize,
        seconds,
    );
    if groups.is_empty() {
        let seen = log
            .threads
            .values()
            .filter(|t| selection.keeps(t, me))
            .count();
        return Err(bad(format!(
            "nothing recorded: of {} ({seen} thread(s) seen in {seconds:.1} s) none blocked and woke twice or kept a CPU busy, so there is no behaviour to replay; no file written\n  fix: record longer (--duration), or select threads that run (--pid, --comm, --cgroup, --all)",
            selection.says()
        )));
    }
    let mut warnings = Vec::new();
    if let Selection::Tgids(t) = &selection {
        let gone: Vec<String> = t
            .iter()
            .filter(|p| !Path::new(&format!("/proc/{p}")).exists())
            .map(u32::to_string)
            .collect();
        if !gone.is_empty() {
            warnings.push(format!(
                "process(es) {} exited during the recording: what they did before is kept",
                gone.join(", ")
            ));
        }
    }
    if recorded.untracked > 0 {
        warnings.push(format!(
            "{} thread(s) or process(es) not recorded: the recorder's maps were full",
            recorded.untracked
        ));
    }
    if recorded.elapsed + Duration::from_millis(200) < args.duration {
        warnings.push(format!(
            "the recording was ended after {seconds:.1} s of the {} asked",
            crate::units::format_duration(args.duration)
        ));
    }
    let online = online_count(&log.online);
    let cpus = args.cpus.unwrap_or_else(|| {
        let n = online;
        if n > 64 {
            warnings.push(format!(
                "this machine has {n} CPUs; a scenario's VM at most 64, which the replay has"
            ));
        }
        n.min(64)
    });
    // A group's affinity past the replay's CPUs (--cpus, or a machine of
    // more than 64) cannot be kept.
    let mut groups = groups;
    for g in &mut groups {
        if let Some(c) = g.group.cpus.take_if(|c| c.iter().any(|c| *c >= cpus)) {
            warnings.push(format!(
                "group {}'s affinity (CPUs {}) not kept: the replay has {cpus} CPU(s)",
                g.group.name,
                crate::units::cpu_list(&c)
            ));
        }
    }
    let length = Duration::from_secs((seconds.round() as u64).max(2));
    // Anonymized, the selection is not said: a comm pattern, a cgroup
    // path or PIDs can name what ran.
    let what = format!(
        "{} on {} ({} CPUs)",
        if args.anonymize {
            "anonymized threads".to_string()
        } else {
            selection.says()
        },
        kernel_release(),
        online
    );
    let rec = crate::record::Recording {
        what: &what,
        length,
        cpus,
        lost: recorded.lost,
        left: &left,
        warnings: &warnings,
    };
    write(&args.output, &name, &groups, &rec)
}

/// Writes the scenario of `groups` to `output` (validated as `check`
/// would first, atomically) and says what it holds; the exit code (0).
fn write(
    output: &Path,
    name: &str,
    groups: &[crate::record::Summary],
    rec: &crate::record::Recording,
) -> Result<i32> {
    let text = crate::record::scenario_text(name, groups, rec)?;
    // What check would say of it, before it is written.
    crate::scenario::parse(output, &text)
        .context("the recorded scenario does not validate (a bug in record: please report it with the output)")?;
    crate::kernel::cache::write_atomic(output, text.as_bytes())?;
    println!(
        "wrote {}: {} group(s), {} thread(s), {} event(s) lost",
        output.display(),
        groups.len(),
        groups.iter().map(|g| g.group.threads).sum::<u32>(),
        rec.lost
    );
    for g in groups {
        println!(
            "  {:<20} {:>4} thread(s)  {:<7} {:.2} CPUs busy, {:.0} bursts/s",
            g.group.name,
            g.group.threads,
            g.group.work.kind(),
            g.figures.cpus_busy,
            g.figures.bursts_per_s
        );
    }
    for w in rec.warnings {
        println!("  NOTE: {w}");
    }
    Ok(0)
}

/// `record --scenario`: the scenario run as one `run` cell under the fair
/// class with its scheduler pass recorded in the guest, each of its
/// groups summarised under its own name; the run directory is kept
/// (./scx-runs/record-TIMESTAMP) as the evidence.
fn record_scenario(args: &RecordArgs, scenario: &str, name: &str) -> Result<i32> {
    #[derive(clap::Parser)]
    struct Run {
        #[command(flatten)]
        run: super::run::RunArgs,
    }
    use clap::Parser;
    let loaded = crate::scenario::resolve(scenario)?;
    let out = PathBuf::from("scx-runs").join(format!("record-{}", super::run::timestamp()));
    let mut argv: Vec<std::ffi::OsString> = vec!["run".into(), "-s".into(), "default".into()];
    argv.extend(["--out".into(), out.clone().into_os_string()]);
    if let Some(k) = &args.kernel {
        argv.extend(["--kernel".into(), k.into()]);
    }
    argv.push(loaded.path.clone().into_os_string());
    let mut run = Run::try_parse_from(argv)
        .map_err(|e| bad(format!("record --scenario: {e}")))?
        .run;
    run.recording = crate::agent::PassRecording::Capture;
    let code = super::run::run(run)?;
    let results = crate::report::load_run(&out)?;
    let result = results
        .iter()
        .find(|r| r.scenario == loaded.scenario.name)
        .with_context(|| format!("no cell of {} in {}", loaded.scenario.name, out.display()))?;
    let pass = result
        .agent
        .as_ref()
        .and_then(|a| a.pass(crate::agent::PassKind::Scheduler));
    let Some(rec) = pass.and_then(|p| p.replayed.as_ref()) else {
        return Err(fail(
            Failure::Infrastructure,
            format!(
                "{} ran without a recording: {} (see {})",
                loaded.scenario.name,
                result.summary.lines().next().unwrap_or(""),
                result.dir.display()
            ),
        ));
    };
    if let Some(e) = &rec.error {
        return Err(fail(
            Failure::Infrastructure,
            format!(
                "recording {} in the guest failed: {e}",
                loaded.scenario.name
            ),
        ));
    }
    let captured = rec.captured.clone().unwrap_or_default();
    if captured.groups.is_empty() {
        return Err(bad(format!(
            "nothing recorded: no group of {} blocked and woke twice or kept a CPU busy in its window ({:.1} s); no file written\n  fix: a scenario whose groups run",
            loaded.path.display(),
            rec.seconds
        )));
    }
    let mut warnings = Vec::new();
    if rec.untracked > 0 {
        warnings.push(format!(
            "{} thread(s) or process(es) not recorded: the recorder's maps were full",
            rec.untracked
        ));
    }
    if code != 0 {
        warnings.push(format!(
            "the run under the fair class did not pass ({}): the recording is of what ran",
            result.summary.lines().next().unwrap_or("")
        ));
    }
    let cpus = loaded.scenario.vm.cpus;
    let what = format!(
        "scenario {} under the fair class in a VM of {} ({cpus} CPUs; run directory {})",
        loaded.scenario.name,
        result.kernel,
        out.display()
    );
    let length = Duration::from_secs((rec.seconds.round() as u64).max(2));
    let recording = crate::record::Recording {
        what: &what,
        length,
        cpus,
        lost: rec.lost,
        left: &captured.left,
        warnings: &warnings,
    };
    write(&args.output, name, &captured.groups, &recording)
}

/// How many CPUs the machine has online (`online`, as sysfs says; not
/// this process's affinity or quota: a recorder run under taskset still
/// records the machine), or what this process may use when that is
/// unknown.
fn online_count(online: &[u32]) -> u32 {
    let n = online.len() as u32;
    if n > 0 {
        n
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "an unknown kernel".into())
}
