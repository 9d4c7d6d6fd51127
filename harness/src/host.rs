//! The host target (`--target host`): cells run on the machine the harness
//! runs on, under its running kernel, with no VM. The same guest side
//! (`guest run-batch`, the agent) runs as a child of the harness; this
//! module is the safety net around it:
//!
//! - **Preflight** ([`preflight`]), before anything changes: root, a kernel
//!   with sched_ext, no sched_ext scheduler attached (unless `--replace`),
//!   cgroup v2 with the controllers the cells need, enough CPUs, the
//!   kernel's BTF and config readable, sysrq available for the emergency
//!   detach. Each failure is one `BadInput` error with a `fix:` line.
//! - **Containment**: each session's agent runs in the cgroup
//!   `/sys/fs/cgroup/scx-harness/host-PID/agent`, its groups under
//!   `host-PID/cells/`; the subtree is killed (`cgroup.kill`) and removed
//!   on every exit path of the harness that runs code (return, error,
//!   panic, SIGINT/SIGTERM). On SIGKILL of the harness the kernel ends the
//!   chain: the agent has the parent-death signal SIGKILL, and so do the
//!   scheduler's loader and the group processes it starts; the loader's
//!   death closes the scheduler's struct_ops link, which detaches it
//!   (`bpf_scx_unreg`), and a `bpf_object` scheduler's link is the
//!   agent's own. The empty subtree a SIGKILL leaves is found and removed
//!   by the next run's preflight ([`sweep_leftovers`]), which says so.
//! - **Stalls**: the agent watches every task of the machine with a bound
//!   ([`HOST_STALL_BOUND`], or the scenario's tighter guest-wide one) and
//!   on a stall detaches through sysrq-S at once.
//! - **Evidence**: [`MachineState`] before and after each session; what
//!   differs is reported as left behind.
//!
//! Knows cgroups, sysfs and the protocol; nothing about scenarios beyond
//! their CPU count and whether they need the cpu controller.

use crate::units::{cpu_list, parse_cpu_list};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::agent::HostPlacement;
use crate::cell::JudgeCtx;
use crate::error::{fail, Failure};
use crate::process::{SupervisedCommand, Terminal};
use crate::protocol;
use crate::report::Target;
use crate::scheduler::lifecycle;
use crate::vm::Outcome;
use crate::vm::SessionEnd;

/// The stall bound for every task of the machine when a scenario has no
/// tighter guest-wide one: well under the kernel's own watchdog (30 s,
/// `scx_watchdog_timeout`), long enough that no healthy scheduler trips it.
pub const HOST_STALL_BOUND: Duration = Duration::from_secs(5);

/// How long a session's end waits for the machine to be as it was (the
/// kernel frees a detached scheduler's BPF programs after RCU grace
/// periods: under TCG that took up to about a second).
const FREE_WAIT: Duration = Duration::from_secs(10);

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The harness's own cgroup subtree on a host.
const HARNESS_CGROUP: &str = "scx-harness";

/// The scenario as it runs on a host, whose CPUs used are `cpus`: with a
/// stall check on every task of the machine at [`HOST_STALL_BOUND`] unless
/// it has one on every task's whole wait at least that tight (a looser
/// one, or one on the scheduler's own part, does not cover it), so the
/// machine's own tasks are watched in every cell and a cell whose
/// scheduler starves them fails on that check, the task named; and each
/// group's `cpus:` (0.. like a VM's vCPUs) as the machine's CPUs they
/// stand for.
pub fn guarded(s: &crate::scenario::Scenario, cpus: &[u32]) -> crate::scenario::Scenario {
    use crate::scenario::{Check, StallCheck, StallTasks};
    let mut s = s.clone();
    let covered = s.checks.iter().any(|c| {
        matches!(c, Check::Stall(st) if st.tasks == StallTasks::Guest
            && st.excluding.is_none()
            && st.max_runnable <= HOST_STALL_BOUND)
    });
    if !covered {
        s.checks.push(Check::Stall(StallCheck {
            max_runnable: HOST_STALL_BOUND,
            group: None,
            tasks: StallTasks::Guest,
            excluding: None,
        }));
    }
    for g in &mut s.groups {
        if let Some(list) = &mut g.cpus {
            for c in list.iter_mut() {
                *c = cpus.get(*c as usize).copied().unwrap_or(*c);
            }
        }
    }
    s
}

/// What the cells of a run need from the machine.
#[derive(Debug, Clone, Default)]
pub struct Needs {
    /// The most CPUs one scenario asks for (`vm.cpus`).
    pub cpus: u32,
    /// Some scenario gives a group a `cpu.weight` (or any cgroup).
    pub cpu_controller: bool,
    /// The name of a scenario whose timeline takes CPUs offline, or that
    /// sets kernel knobs: never on a machine the harness does not own (a
    /// killed run could leave either behind).
    pub hotplug: Option<String>,
}

impl Needs {
    /// What these scenarios need together.
    pub fn of<'a>(scenarios: impl IntoIterator<Item = &'a crate::scenario::Loaded>) -> Needs {
        scenarios.into_iter().fold(Needs::default(), |n, s| Needs {
            cpus: n.cpus.max(s.scenario.vm.cpus),
            cpu_controller: n.cpu_controller
                || s.scenario.groups.iter().any(|g| g.cgroup.is_some())
                || !s.scenario.cgroups.is_empty(),
            hotplug: n.hotplug.or_else(|| {
                (s.scenario.timeline.iter().any(|o| o.hotplug.is_some())
                    || !s.scenario.knobs.is_empty())
                .then(|| s.scenario.name.clone())
            }),
        })
    }
}

/// The machine, as the preflight found it. Holds the host target's lock
/// (one run at a time) for as long as it lives; dropping it (the run's
/// end, or the unwinding of a panic) kills and removes this process's
/// session cgroup if one is still there.
#[derive(Debug)]
pub struct Host {
    pub hostname: String,
    pub cpu_model: String,
    /// `uname -r`.
    pub release: String,
    /// Online CPUs the harness may use, in order.
    online: Vec<u32>,
    /// What the first session does before it starts (sweeping a killed
    /// run's cgroups, `--replace`'s detach); `None` once done.
    prepare: Arc<Mutex<Option<Prepare>>>,
    /// What sessions left behind (should stay empty), for the run's exit.
    left_behind: Arc<Mutex<Vec<String>>>,
    /// The lock: released by the kernel when this process ends, however.
    _lock: std::fs::File,
}

/// The changes the preflight decided on, made just before the first
/// session (after every check, build and the run directory).
#[derive(Debug, Clone, Copy)]
struct Prepare {
    /// Detach the scheduler attached now (`--replace`).
    replace: bool,
}

impl Drop for Host {
    fn drop(&mut self) {
        if run_cgroup().exists() {
            if let Err(e) = kill_and_remove(&run_cgroup()) {
                eprintln!("scx-harness: {e:#}");
            }
            let _ = std::fs::remove_dir(harness_cgroup());
        }
    }
}

impl Host {
    /// The first `n` usable CPUs (the scenario's `vm.cpus`).
    pub fn cpus(&self, n: u32) -> Vec<u32> {
        self.online.iter().copied().take(n as usize).collect()
    }

    /// Where the agent of a session of `cpus` CPUs puts what it starts.
    pub fn placement(&self, cpus: u32) -> HostPlacement {
        HostPlacement {
            cgroup: run_cgroup(),
            cpus: self.cpus(cpus),
        }
    }

    /// The identity a host cell's result carries.
    pub fn target(&self, cpus: u32) -> Target {
        Target::Host {
            hostname: self.hostname.clone(),
            cpu_model: self.cpu_model.clone(),
            kernel: self.release.clone(),
            cpus: cpu_list(&self.cpus(cpus)),
        }
    }

    pub(crate) fn judge_ctx(&self, shared: PathBuf, cpus: u32) -> JudgeCtx {
        JudgeCtx {
            shared,
            kernel: self.release.clone(),
            // Per machine: history compares a cell with the same cell's
            // earlier runs on this kernel id (and accelerator).
            kernel_id: self.kernel_id(),
            kernel_name: String::new(),
            // Its own "accelerator", so history never compares a host's
            // numbers with a VM's (history keys on it).
            accel: "host".into(),
            target: self.target(cpus),
            host_cpus: Some(self.cpus(cpus)),
        }
    }

    /// The kernel id a host cell's results carry: `host:HOSTNAME:RELEASE`.
    pub fn kernel_id(&self) -> String {
        format!("host:{}:{}", self.hostname, self.release)
    }

    /// Labels a result this machine never measured (not built,
    /// interrupted before its session) with where it would have run.
    pub fn label(&self, r: &mut crate::report::CellResult) {
        r.kernel = self.release.clone();
        r.kernel_id = self.kernel_id();
        r.accel = "host".into();
        r.target = self.target(r.cpus);
    }

    /// One session's agent, to run on a thread of its own.
    pub fn agent_run(
        &self,
        argv: Vec<String>,
        shared: PathBuf,
        console_log: PathBuf,
        timeout: Duration,
    ) -> AgentRun {
        AgentRun {
            argv,
            shared,
            console_log,
            timeout,
            prepare: self.prepare.clone(),
            left_behind: self.left_behind.clone(),
            stop: None,
        }
    }

    /// What the sessions so far left on the machine (empty: nothing).
    pub fn left_behind(&self) -> Vec<String> {
        self.left_behind
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// An `Infrastructure` error naming what the sessions left on the
    /// machine (compared with before each), if they left anything.
    pub fn check_left_nothing(&self) -> Result<()> {
        let left = self.left_behind();
        if left.is_empty() {
            return Ok(());
        }
        Err(fail(
            Failure::Infrastructure,
            format!(
                "the run left this on the machine (compared with before it):\n  {}",
                left.join("\n  ")
            ),
        ))
    }
}

fn refuse(what: String, fix: &str) -> anyhow::Error {
    fail(
        Failure::BadInput,
        format!("--target host: {what}\n  fix: {fix}"),
    )
}

fn read_trim(p: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// The machine's kernel release (`uname -r`).
pub fn release() -> String {
    read_trim("/proc/sys/kernel/osrelease").unwrap_or_default()
}

/// Checks the machine before anything changes, then removes what a killed
/// run of the harness left and, with `replace`, detaches the scheduler
/// attached now. Every refusal is a `BadInput` error with a fix.
pub fn preflight(needs: Needs, replace: bool) -> Result<Host> {
    let release = release();
    if !lifecycle::sched_ext_present() {
        return Err(refuse(
            format!("the running kernel ({release}) has no sched_ext (/sys/kernel/sched_ext/state is missing)"),
            "boot a kernel built with CONFIG_SCHED_CLASS_EXT=y, or drop --target host to run in a VM",
        ));
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err(refuse(
            "the host target needs root: it attaches a scheduler, makes cgroups and loads a BPF probe".into(),
            "run it as root (sudo), or drop --target host to run in a VM",
        ));
    }
    let root = Path::new(CGROUP_ROOT);
    let controllers = read_trim(root.join("cgroup.controllers")).ok_or_else(|| {
        refuse(
            format!("no cgroup v2 hierarchy at {CGROUP_ROOT} (no cgroup.controllers)"),
            "mount cgroup2 there (mount -t cgroup2 none /sys/fs/cgroup)",
        )
    })?;
    if needs.cpu_controller && !controllers.split_whitespace().any(|c| c == "cpu") {
        return Err(refuse(
            format!("a scenario sets cpu.weight, but the cpu controller is not available at {CGROUP_ROOT} (controllers: {controllers})"),
            "release the cpu controller from cgroup v1, or run scenarios without `cgroup:`",
        ));
    }
    if let Some(name) = &needs.hotplug {
        return Err(refuse(
            format!("scenario {name} takes CPUs offline (a timeline `hotplug`) or sets kernel knobs: that is done in a VM only, where nothing outlives the run"),
            "drop --target host for it, or remove its hotplug operations and knobs",
        ));
    }
    let online = usable_cpus();
    if (online.len() as u32) < needs.cpus {
        return Err(refuse(
            format!(
                "a scenario asks for {} CPUs; the harness may use {} ({})",
                needs.cpus,
                online.len(),
                cpu_list(&online)
            ),
            "run on a machine with more CPUs, or lower the scenario's vm.cpus",
        ));
    }
    if std::fs::File::open("/sys/kernel/btf/vmlinux").is_err() {
        return Err(refuse(
            "the kernel's BTF (/sys/kernel/btf/vmlinux) is not readable; schedulers and the probe need it".into(),
            "boot a kernel built with CONFIG_DEBUG_INFO_BTF=y",
        ));
    }
    let boot_config = PathBuf::from(format!("/boot/config-{release}"));
    if std::fs::File::open("/proc/config.gz").is_err() && std::fs::File::open(&boot_config).is_err()
    {
        return Err(refuse(
            format!("neither /proc/config.gz nor {} is readable; a scheduler's loader reads the kernel's config", boot_config.display()),
            "install the kernel's config in /boot, or build it with CONFIG_IKCONFIG_PROC=y",
        ));
    }
    if !Path::new("/proc/sysrq-trigger").exists() {
        return Err(refuse(
            "no /proc/sysrq-trigger (CONFIG_MAGIC_SYSRQ): the harness could not detach a stalling scheduler at once".into(),
            "boot a kernel built with CONFIG_MAGIC_SYSRQ=y",
        ));
    }
    let lock = take_lock()?;
    if let Some(pid) = live_run() {
        return Err(refuse(
            format!("another scx-harness run (pid {pid}) has a session on this machine"),
            "wait for it to finish; two runs would measure each other",
        ));
    }
    if let Some(ops) = lifecycle::attached_ops() {
        if !replace {
            return Err(refuse(
                format!("a sched_ext scheduler is attached ({ops}); the harness does not replace it"),
                "stop it first, or pass --replace to detach it (sysrq-S) for the run; it is not restarted afterwards",
            ));
        }
    }
    // Nothing has changed: the sweep and --replace happen just before the
    // first session (`prepare_once`).
    Ok(Host {
        hostname: read_trim("/proc/sys/kernel/hostname").unwrap_or_default(),
        cpu_model: cpu_model(),
        release,
        online,
        prepare: Arc::new(Mutex::new(Some(Prepare { replace }))),
        left_behind: Arc::default(),
        _lock: lock,
    })
}

/// Where the host target's lock lives: /run (tmpfs on any systemd
/// machine), else /dev/shm.
const LOCKS: [&str; 2] = [
    "/run/scx-harness-host.lock",
    "/dev/shm/scx-harness-host.lock",
];

/// Takes the host target's lock (`flock`, exclusive, not waiting), so two
/// runs never measure each other, and a `host-PID` cgroup found while it is
/// held belongs to a run that is gone. The file says the holder's pid.
fn take_lock() -> Result<std::fs::File> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let mut last = None;
    for path in LOCKS {
        let mut f = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
        {
            Ok(f) => f,
            Err(e) => {
                last = Some(format!("{path}: {e}"));
                continue;
            }
        };
        // SAFETY: flock on a file we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let holder = read_trim(path).unwrap_or_default();
            return Err(refuse(
                format!("another scx-harness run (pid {holder}) is using the host target ({path} is locked)"),
                "wait for it to finish; two runs would measure each other",
            ));
        }
        let _ = f.set_len(0);
        let _ = write!(f, "{}", std::process::id());
        return Ok(f);
    }
    Err(refuse(
        format!(
            "cannot create the host target's lock ({})",
            last.unwrap_or_default()
        ),
        "make /run or /dev/shm writable for root",
    ))
}

/// Does the preflight's changes once, before the first session: removes
/// what killed runs left, and with `--replace` detaches the scheduler
/// attached now.
fn prepare_once(prepare: &Mutex<Option<Prepare>>) -> Result<()> {
    let Some(p) = prepare.lock().ok().and_then(|mut p| p.take()) else {
        return Ok(());
    };
    sweep_leftovers();
    if let (true, Some(ops)) = (p.replace, lifecycle::attached_ops()) {
        lifecycle::detach_through_sysrq().context("detaching the attached scheduler (sysrq-S)")?;
        if !wait_state_disabled(Duration::from_secs(5)) {
            return Err(fail(
                Failure::Infrastructure,
                format!("--replace: {ops} was asked to detach (sysrq-S) but sched_ext is still not disabled after 5 s"),
            ));
        }
        eprintln!("scx-harness: --replace: detached {ops} (sysrq-S)");
    }
    Ok(())
}

/// The CPUs online and in the harness's own affinity mask.
fn usable_cpus() -> Vec<u32> {
    let online = read_trim("/sys/devices/system/cpu/online")
        .and_then(|s| parse_cpu_list(&s))
        .unwrap_or_default();
    // SAFETY: a zeroed cpu_set_t, filled by sched_getaffinity for ourselves.
    let allowed = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return online;
        }
        set
    };
    online
        .into_iter()
        // SAFETY: CPU_ISSET reads the set filled above.
        .filter(|c| {
            (*c as usize) < libc::CPU_SETSIZE as usize
                && unsafe { libc::CPU_ISSET(*c as usize, &allowed) }
        })
        .collect()
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn harness_cgroup() -> PathBuf {
    Path::new(CGROUP_ROOT).join(HARNESS_CGROUP)
}

/// This process's session cgroup: `scx-harness/host-PID`.
fn run_cgroup() -> PathBuf {
    harness_cgroup().join(format!("host-{}", std::process::id()))
}

/// The pid in a `host-PID` cgroup's name.
fn owner_of(dir: &Path) -> Option<i32> {
    dir.file_name()?
        .to_str()?
        .strip_prefix("host-")?
        .parse()
        .ok()
}

/// Whether `pid` is a live scx-harness process.
fn is_harness(pid: i32) -> bool {
    read_trim(format!("/proc/{pid}/comm")).is_some_and(|c| c.starts_with("scx-harness"))
}

/// Another live harness's session cgroup's owner, if there is one.
fn live_run() -> Option<i32> {
    std::fs::read_dir(harness_cgroup())
        .ok()?
        .flatten()
        .filter_map(|e| owner_of(&e.path()))
        .find(|pid| *pid != std::process::id() as i32 && is_harness(*pid))
}

/// Removes the session cgroups of harness runs that are gone (killed by
/// SIGKILL, or the machine lost power): kills what is still in them and
/// removes them. Call with the host target's lock held: no other run is
/// live then. Returns one line per run cleaned up, for people.
fn sweep_leftovers() -> Vec<String> {
    let mut said = Vec::new();
    let Ok(entries) = std::fs::read_dir(harness_cgroup()) else {
        return said;
    };
    for e in entries.flatten() {
        let dir = e.path();
        let Some(pid) = owner_of(&dir) else { continue };
        // A live harness's session is never touched, whatever the lock
        // says (two runs may not share /run, e.g. in a container); this
        // process has no session yet, so one named after its pid is a dead
        // run's whose pid was reused.
        if pid != std::process::id() as i32 && is_harness(pid) {
            continue;
        }
        let procs = procs_in(&dir);
        let removed = kill_and_remove(&dir);
        said.push(format!(
            "removed what run {pid} left on this machine: {} process(es) killed, cgroup {} {}",
            procs.len(),
            dir.display(),
            if removed.is_ok() {
                "removed".to_string()
            } else {
                format!(
                    "not removed ({})",
                    removed.err().map(|e| format!("{e:#}")).unwrap_or_default()
                )
            }
        ));
    }
    if !said.is_empty() {
        // The harness's own cgroup too, when no other run uses it.
        let _ = std::fs::remove_dir(harness_cgroup());
    }
    for s in &said {
        eprintln!("scx-harness: {s}");
    }
    said
}

/// Every process in the cgroup subtree at `dir`.
fn procs_in(dir: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    for d in walk(dir) {
        if let Some(s) = read_trim(d.join("cgroup.procs")) {
            out.extend(s.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
    }
    out
}

/// `dir` and every cgroup below it, parents first.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(rd) = std::fs::read_dir(&out[i]) {
            let mut subs: Vec<PathBuf> = rd
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect();
            subs.sort();
            out.extend(subs);
        }
        i += 1;
    }
    out
}

/// Kills every process of the cgroup subtree at `dir` (`cgroup.kill`,
/// Linux 5.14; else SIGKILL to each listed process), waits until it is
/// empty (5 s at most) and removes it, deepest first.
fn kill_and_remove(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if std::fs::write(dir.join("cgroup.kill"), "1").is_err() {
        for pid in procs_in(dir) {
            // SAFETY: signalling a process listed in our own cgroup.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    }
    let by = Instant::now() + Duration::from_secs(5);
    while !procs_in(dir).is_empty() && Instant::now() < by {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut dirs = walk(dir);
    dirs.reverse();
    for d in dirs {
        std::fs::remove_dir(&d).with_context(|| {
            format!(
                "removing cgroup {} (processes still in it: {:?})",
                d.display(),
                procs_in(&d)
            )
        })?;
    }
    Ok(())
}

fn wait_state_disabled(within: Duration) -> bool {
    lifecycle::wait_detached(within).is_some()
}

/// A session's cgroup subtree: made before the agent starts, killed and
/// removed when dropped (any return, an error or a panic of the harness).
struct RunCgroup {
    dir: PathBuf,
    /// The harness's cgroup did not exist before: removed with this.
    made_parent: bool,
}

impl RunCgroup {
    fn create() -> Result<RunCgroup> {
        let parent = harness_cgroup();
        let made_parent = !parent.exists();
        if made_parent {
            std::fs::create_dir(&parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let dir = run_cgroup();
        let rc = RunCgroup { dir, made_parent };
        std::fs::create_dir(&rc.dir).with_context(|| format!("creating {}", rc.dir.display()))?;
        std::fs::create_dir(rc.dir.join("agent"))
            .with_context(|| format!("creating {}/agent", rc.dir.display()))?;
        Ok(rc)
    }

    fn agent_procs(&self) -> PathBuf {
        self.dir.join("agent").join("cgroup.procs")
    }

    fn remove(&mut self) -> Result<()> {
        kill_and_remove(&self.dir)?;
        if self.made_parent {
            // Another run may have made a session of its own there since.
            let _ = std::fs::remove_dir(harness_cgroup());
            self.made_parent = false;
        }
        Ok(())
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            eprintln!("scx-harness: {e:#}");
        }
    }
}

/// One session's agent on the host (see [`Host::agent_run`]).
pub struct AgentRun {
    argv: Vec<String>,
    shared: PathBuf,
    console_log: PathBuf,
    timeout: Duration,
    prepare: Arc<Mutex<Option<Prepare>>>,
    left_behind: Arc<Mutex<Vec<String>>>,
    /// Set by another thread to end the session now, as at its deadline.
    stop: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl AgentRun {
    /// Ends the session as at its deadline once `stop` is set (a serving
    /// session's cell past its own deadline).
    pub fn stop_on(mut self, stop: Arc<std::sync::atomic::AtomicBool>) -> AgentRun {
        self.stop = Some(stop);
        self
    }

    /// Runs the agent to its end (or the deadline, or SIGINT/SIGTERM),
    /// copying the kernel's log lines to the console log as they come,
    /// then kills and removes the session's cgroup subtree, makes sure the
    /// scheduler is detached, and compares the machine with before.
    pub fn run(self) -> Result<SessionEnd> {
        std::fs::create_dir_all(&self.shared)
            .with_context(|| format!("creating {}", self.shared.display()))?;
        prepare_once(&self.prepare)?;
        let before = MachineState::capture();
        let mut cgroup = RunCgroup::create()?;
        let mut kmsg = crate::kmsg::Cursor::at_end();
        let mut console = std::fs::File::create(&self.console_log)
            .with_context(|| format!("creating {}", self.console_log.display()))?;
        let (program, args) = self.argv.split_first().context("no agent command")?;
        let mut cmd = SupervisedCommand::new_same_pid_namespace(program, Terminal::Detached);
        let dir = self
            .console_log
            .parent()
            .unwrap_or(Path::new("/"))
            .to_path_buf();
        cmd.args(args)
            .env(protocol::SHARED_ENV, &self.shared)
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(dir.join("agent.stdout"))?)
            .stderr(std::fs::File::create(dir.join("agent.stderr"))?);
        join_cgroup_on_exec(&mut cmd, &cgroup.agent_procs())?;
        let mut child = cmd.spawn("the host agent")?;
        let deadline = Instant::now() + self.timeout;
        let copy_kmsg = |console: &mut std::fs::File, kmsg: &mut crate::kmsg::Cursor| {
            use std::io::Write;
            for l in kmsg.read_new() {
                let _ = writeln!(console, "[kmsg] {l}");
            }
        };
        let outcome = loop {
            copy_kmsg(&mut console, &mut kmsg);
            if let Some(st) = child.wait_for(Duration::from_millis(200))? {
                break if crate::process::interrupted() {
                    Outcome::Interrupted
                } else {
                    Outcome::Exited {
                        code: st.code().unwrap_or(-1),
                    }
                };
            }
            if crate::process::interrupted() {
                child.kill();
                break Outcome::Interrupted;
            }
            let stopped = self
                .stop
                .as_ref()
                .is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst));
            if stopped || Instant::now() >= deadline {
                child.kill();
                break Outcome::TimedOut {
                    reached_guest: true,
                };
            }
        };
        drop(child);
        // The agent is gone, and with it its children (parent-death
        // signal): the scheduler's loader too, so the kernel detaches the
        // scheduler. A loader a stalling scheduler never runs cannot act on
        // its SIGKILL: then the kernel is asked (the lock and the preflight
        // say any scheduler attached now is this run's).
        let mut left = Vec::new();
        if !wait_state_disabled(Duration::from_secs(1)) {
            let _ = lifecycle::detach_through_sysrq();
            if !wait_state_disabled(Duration::from_secs(5)) {
                left.push("a sched_ext scheduler is still attached".into());
            } else if matches!(outcome, Outcome::Exited { .. }) {
                // The agent ended on its own, having stopped its scheduler:
                // one still attached escaped it (or something attached one).
                left.push(
                    "a sched_ext scheduler was still attached after the session ended (detached with sysrq-S)"
                        .into(),
                );
            }
        }
        if let Err(e) = cgroup.remove() {
            left.push(format!("{e:#}"));
        }
        copy_kmsg(&mut console, &mut kmsg);
        left.extend(before.wait_same(FREE_WAIT));
        if !left.is_empty() {
            if let Ok(mut l) = self.left_behind.lock() {
                l.extend(left.iter().cloned());
            }
        }
        let text = crate::vm::console::read(&self.console_log);
        Ok(SessionEnd {
            outcome,
            crashes: crate::vm::console::scan(&text),
            console_log: self.console_log,
        })
    }
}

/// Makes the child move itself into the cgroup whose `cgroup.procs` is
/// `procs` before it runs anything (so nothing it starts escapes it).
fn join_cgroup_on_exec(cmd: &mut SupervisedCommand, procs: &Path) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::process::CommandExt;
    let path = std::ffi::CString::new(procs.as_os_str().as_bytes())
        .context("a cgroup path with a NUL byte")?;
    // SAFETY: open, write and close are async-signal-safe; the path was
    // allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
            let err = std::io::Error::last_os_error();
            libc::close(fd);
            if ok {
                Ok(())
            } else {
                Err(err)
            }
        });
    }
    Ok(())
}

/// The probe's BPF programs (probe.bpf.c), as the kernel names them.
const PROBE_PROGRAMS: [&str; 7] = [
    "on_wakeup",
    "on_wakeup_new",
    "on_switch",
    "on_migrate",
    "on_ipi_send_cpu",
    "on_wake_idle_without_ipi",
    "on_cpu_idle",
];

/// What of the machine a run could leave behind: the sched_ext state, the
/// harness's cgroups, BPF programs of the kinds the harness loads (any
/// struct_ops program, the probe's), pinned BPF objects and the trace
/// buffer switch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MachineState {
    pub scheduler: Option<String>,
    pub cgroups: Vec<PathBuf>,
    /// (id, type, name)
    pub bpf_programs: Vec<(u32, String, String)>,
    pub pinned: Vec<PathBuf>,
    pub tracing_on: Option<String>,
}

impl MachineState {
    pub fn capture() -> MachineState {
        let cgroups = if harness_cgroup().exists() {
            walk(&harness_cgroup())
        } else {
            Vec::new()
        };
        let bpf_programs = libbpf_rs::query::ProgInfoIter::default()
            .filter(|p| match p.ty {
                // Only sched_ext schedulers (and TCP congestion control,
                // which nothing starts during a run) load struct_ops.
                libbpf_rs::ProgramType::StructOps => true,
                // The probe's programs, by name: other tracing on the
                // machine is none of the run's doing.
                libbpf_rs::ProgramType::Tracing => {
                    PROBE_PROGRAMS.contains(&p.name.to_string_lossy().as_ref())
                }
                _ => false,
            })
            .map(|p| {
                (
                    p.id,
                    format!("{:?}", p.ty),
                    p.name.to_string_lossy().into_owned(),
                )
            })
            .collect();
        let pinned = std::fs::read_dir("/sys/fs/bpf")
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        MachineState {
            scheduler: lifecycle::attached_ops(),
            cgroups,
            bpf_programs,
            pinned,
            tracing_on: read_trim("/sys/kernel/tracing/tracing_on"),
        }
    }

    /// What the machine still has that `self` (before) did not, once it
    /// has nothing more or `within` has passed: the kernel frees a detached
    /// scheduler's programs after RCU grace periods, not at once.
    pub fn wait_same(&self, within: Duration) -> Vec<String> {
        let by = Instant::now() + within;
        loop {
            let left = self.left_behind(&MachineState::capture());
            if left.is_empty() || Instant::now() >= by {
                return left;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What `after` has that `self` (before) did not, one line each.
    pub fn left_behind(&self, after: &MachineState) -> Vec<String> {
        let mut out = Vec::new();
        if after.scheduler != self.scheduler {
            out.push(format!(
                "sched_ext: {} before, {} after",
                self.scheduler.as_deref().unwrap_or("disabled"),
                after.scheduler.as_deref().unwrap_or("disabled")
            ));
        }
        for c in after.cgroups.iter().filter(|c| !self.cgroups.contains(c)) {
            out.push(format!("cgroup {}", c.display()));
        }
        for p in after
            .bpf_programs
            .iter()
            .filter(|p| !self.bpf_programs.contains(p))
        {
            out.push(format!("BPF program {} ({}, {})", p.0, p.1, p.2));
        }
        for p in after.pinned.iter().filter(|p| !self.pinned.contains(p)) {
            out.push(format!("pinned BPF object {}", p.display()));
        }
        if after.tracing_on != self.tracing_on {
            out.push(format!(
                "tracing_on: {:?} before, {:?} after",
                self.tracing_on, after.tracing_on
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_run_left_is_named() {
        let before = MachineState::default();
        let after = MachineState {
            scheduler: Some("simple".into()),
            cgroups: vec!["/sys/fs/cgroup/scx-harness/host-9".into()],
            bpf_programs: vec![(7, "StructOps".into(), "simple_enqueue".into())],
            pinned: vec![],
            tracing_on: None,
        };
        let left = before.left_behind(&after);
        assert_eq!(left.len(), 3, "{left:?}");
        assert!(left[0].contains("disabled before, simple after"));
        assert!(before.left_behind(&before).is_empty());
    }

    #[test]
    fn a_host_scenario_watches_the_machine_and_maps_group_cpus() {
        let loaded = crate::scenario::resolve("cpu-affinity").unwrap();
        let g = loaded
            .scenario
            .groups
            .iter()
            .position(|g| g.cpus.is_some())
            .expect("cpu-affinity pins a group");
        let on = guarded(&loaded.scenario, &[4, 5]);
        // cpu-affinity has no guest-wide bound of its own: the 5 s one is
        // added; a scenario whose own is as tight keeps just its own.
        let before = loaded.scenario.groups[g].cpus.clone().unwrap();
        let after = on.groups[g].cpus.clone().unwrap();
        let want: Vec<u32> = before.iter().map(|c| [4, 5][*c as usize]).collect();
        assert_eq!(after, want);
        assert_eq!(on.checks.len(), loaded.scenario.checks.len() + 1);
        let twice = guarded(&on, &[0, 1]);
        assert_eq!(twice.checks.len(), on.checks.len());
    }

    #[test]
    fn a_session_cgroup_names_its_owner() {
        assert_eq!(owner_of(Path::new("/x/host-1234")), Some(1234));
        assert_eq!(owner_of(Path::new("/x/cells")), None);
    }
}
