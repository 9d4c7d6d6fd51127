//! Child processes that must never outlive the harness.
//!
//! A [`Supervised`] child is started inside its own PID namespace when the
//! host allows it (`unshare --pid --fork --kill-child`), with the parent-death
//! signal set to SIGKILL. Killing the one `unshare` process therefore takes the
//! whole tree below it with it (vng, QEMU, virtiofsd), and so does the death of
//! the harness itself, even by SIGKILL. Where PID namespaces are not allowed
//! (no CAP_SYS_ADMIN), the child gets its own process group, which is killed
//! as a whole; only a SIGKILL of the harness can then leave orphans.
//!
//! This module knows nothing about what the child is; `vng` and `kernel`
//! decide that.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// Process groups of the live supervised children, killed by the signal
/// handler so that waits return at once.
static LIVE: Mutex<Vec<i32>> = Mutex::new(Vec::new());

/// Installs the SIGINT/SIGTERM/SIGHUP handler: it marks the run interrupted
/// and kills every supervised child, so that the code waiting on them can
/// return, write what it has, and exit with [`crate::ExitCode::Interrupted`].
/// Call once, from `main`; tests rely on nextest's process-group kill and the
/// parent-death signal instead.
pub fn install_signal_handler() -> Result<()> {
    ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            // Second signal: the user means it.
            kill_all_live();
            std::process::exit(crate::ExitCode::Interrupted.code());
        }
        kill_all_live();
    })
    .context("installing the SIGINT/SIGTERM handler")
}

/// True once SIGINT or SIGTERM has been received.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

fn kill_all_live() {
    let live = LIVE.lock().map(|l| l.clone()).unwrap_or_default();
    for pgid in live {
        // SAFETY: plain syscall on a process group we created.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
}

fn pid_namespaces_work() -> bool {
    static WORKS: OnceLock<bool> = OnceLock::new();
    *WORKS.get_or_init(|| {
        Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child=SIGKILL", "--", "true"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    })
}

/// How a supervised child is attached to the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminal {
    /// Own process group: Ctrl-C reaches the harness only, which then stops
    /// the child deliberately.
    Detached,
    /// Stays in the harness's (foreground) process group, for an interactive
    /// guest shell that reads the terminal.
    Foreground,
}

/// Makes `cmd`'s process get SIGKILL when the thread that spawns it exits
/// (`PR_SET_PDEATHSIG`): with the harness, or with the guest-side agent,
/// by any signal, SIGKILL included. Spawn it from a thread that lives as
/// long as the child should.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl and getppid are async-signal-safe; nothing else runs.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() == 1 {
                return Err(io::Error::other("parent exited during spawn"));
            }
            Ok(())
        });
    }
}

/// Why [`Supervised::wait`] returned.
#[derive(Debug)]
pub enum Waited {
    Exited(ExitStatus),
    /// The deadline passed; the child tree has been killed.
    TimedOut,
    /// SIGINT/SIGTERM arrived; the child tree has been killed.
    Interrupted,
}

impl std::fmt::Display for Waited {
    /// "exit status: 101", "signal: 9 (SIGKILL)", "timed out", "interrupted".
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Waited::Exited(s) => write!(f, "{s}"),
            Waited::TimedOut => f.write_str("timed out"),
            Waited::Interrupted => f.write_str("interrupted"),
        }
    }
}

/// A running child process tree that is killed when this value is dropped.
#[derive(Debug)]
pub struct Supervised {
    child: Child,
    pgid: Option<i32>,
    what: String,
    reaped: Option<ExitStatus>,
}

/// A command that will run under supervision: configure it like a
/// [`Command`] (arguments, environment, stdio) through `DerefMut`, then
/// [`SupervisedCommand::spawn`] it.
#[derive(Debug)]
pub struct SupervisedCommand {
    cmd: Command,
    terminal: Terminal,
}

impl std::ops::Deref for SupervisedCommand {
    type Target = Command;
    fn deref(&self) -> &Command {
        &self.cmd
    }
}

impl std::ops::DerefMut for SupervisedCommand {
    fn deref_mut(&mut self) -> &mut Command {
        &mut self.cmd
    }
}

impl SupervisedCommand {
    /// `program` with no arguments yet; add them through `DerefMut`.
    pub fn new(program: impl AsRef<std::ffi::OsStr>, terminal: Terminal) -> Self {
        Self::build(program, terminal, pid_namespaces_work())
    }

    /// Like [`SupervisedCommand::new`], but in the harness's own PID
    /// namespace, for a child whose process ids must mean to the harness
    /// what they mean to the kernel (the host target's agent, whose BPF
    /// probe tracks tasks by pid). Its tree is its process group; the
    /// parent-death signal still ends the child with the harness, and the
    /// child must give its own children theirs ([`die_with_parent`]).
    pub fn new_same_pid_namespace(
        program: impl AsRef<std::ffi::OsStr>,
        terminal: Terminal,
    ) -> Self {
        Self::build(program, terminal, false)
    }

    fn build(
        program: impl AsRef<std::ffi::OsStr>,
        terminal: Terminal,
        own_namespace: bool,
    ) -> Self {
        let mut cmd = if own_namespace {
            let mut u = Command::new("unshare");
            u.args(["--pid", "--fork", "--kill-child=SIGKILL", "--"]);
            u.arg(program);
            u
        } else {
            tracing::debug!("PID namespaces unavailable; falling back to a process group");
            Command::new(program)
        };
        if terminal == Terminal::Detached {
            cmd.process_group(0);
        }
        die_with_parent(&mut cmd);
        Self { cmd, terminal }
    }

    /// Starts the tree. `what` names it in errors and logs. The spawning
    /// thread must outlive the child: the parent-death signal fires when the
    /// thread that forked exits.
    pub fn spawn(mut self, what: &str) -> Result<Supervised> {
        let child = self
            .cmd
            .spawn()
            .with_context(|| format!("starting {what} ({:?})", self.cmd.get_program()))?;
        let pgid = (self.terminal == Terminal::Detached).then_some(child.id() as i32);
        if let Some(pgid) = pgid {
            if let Ok(mut live) = LIVE.lock() {
                live.push(pgid);
            }
        }
        Ok(Supervised {
            child,
            pgid,
            what: what.to_string(),
            reaped: None,
        })
    }
}

impl Supervised {
    /// The supervised process's stdio handles, for the caller to read.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the child exits, the deadline passes, or the harness is
    /// interrupted; in the last two cases the tree is killed first.
    pub fn wait(&mut self, deadline: Option<Instant>) -> Result<Waited> {
        self.wait_or_stop(deadline, None)
    }

    /// [`Self::wait`], and the tree is killed as at its deadline once
    /// `stop` is set (checked every 100 ms): how a caller on another thread
    /// ends a child it no longer trusts.
    pub fn wait_or_stop(
        &mut self,
        deadline: Option<Instant>,
        stop: Option<&std::sync::atomic::AtomicBool>,
    ) -> Result<Waited> {
        loop {
            if let Some(status) = self.try_reap()? {
                // The signal handler sets the flag before it kills the
                // tree: a child that died of that kill was interrupted.
                if interrupted() {
                    return Ok(Waited::Interrupted);
                }
                return Ok(Waited::Exited(status));
            }
            if interrupted() {
                self.kill();
                return Ok(Waited::Interrupted);
            }
            let now = Instant::now();
            if stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst)) {
                tracing::debug!("{} was asked to stop; killing it", self.what);
                self.kill();
                return Ok(Waited::TimedOut);
            }
            if let Some(deadline) = deadline {
                if now >= deadline {
                    tracing::debug!("{} passed its deadline; killing it", self.what);
                    self.kill();
                    return Ok(Waited::TimedOut);
                }
            }
            let slice = deadline
                .map(|d| d.saturating_duration_since(now))
                .unwrap_or(Duration::MAX)
                .min(Duration::from_millis(100));
            self.poll_exit(slice);
        }
    }

    /// Waits up to `timeout` for the child to exit, without killing it.
    pub fn wait_for(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        if let Some(s) = self.try_reap()? {
            return Ok(Some(s));
        }
        self.poll_exit(timeout);
        self.try_reap()
    }

    /// Blocks until the child exits or `timeout` passes, without reaping it.
    fn poll_exit(&self, timeout: Duration) {
        match PidFd::open(self.child.id() as i32) {
            Some(fd) => {
                fd.wait_exit(Instant::now() + timeout);
            }
            None => std::thread::sleep(timeout.min(Duration::from_millis(20))),
        }
    }

    fn try_reap(&mut self) -> Result<Option<ExitStatus>> {
        if let Some(s) = self.reaped {
            return Ok(Some(s));
        }
        let status = self
            .child
            .try_wait()
            .with_context(|| format!("waiting for {}", self.what))?;
        if let Some(s) = status {
            self.reaped = Some(s);
            self.unregister();
        }
        Ok(status)
    }

    /// Stops the whole tree politely: SIGTERM to the child, its process
    /// group and every descendant (also one that left the group, such as a
    /// server's worker in a session of its own), then up to `grace` for
    /// all of them to exit, then SIGKILL to what is left; returns once
    /// every one has exited (bounded at 10 s more). The tree is taken
    /// before the first signal, as pidfds, so an exit of the child does not
    /// hide its descendants.
    pub fn stop(&mut self, grace: Duration) {
        let leader = self.child.id() as i32;
        let mut tree: Vec<PidFd> = descendants(leader)
            .into_iter()
            .filter_map(PidFd::open)
            .collect();
        if self.reaped.is_none() {
            tree.extend(PidFd::open(leader));
        }
        let pgid = self.pgid;
        let signal_group = |signal: i32| {
            if let Some(pgid) = pgid {
                // SAFETY: plain syscall on the process group we made.
                unsafe { libc::kill(-pgid, signal) };
            }
        };
        signal_group(libc::SIGTERM);
        for p in &tree {
            // SAFETY: a pidfd we hold (its pid cannot be reused).
            unsafe { libc::syscall(libc::SYS_pidfd_send_signal, p.fd, libc::SIGTERM, 0, 0) };
        }
        let deadline = Instant::now() + grace;
        // The leader is our child: reap it as it exits, or its pidfd stays
        // readable-but-unreaped and the wait below is a busy one.
        while self.reaped.is_none() && Instant::now() < deadline {
            self.poll_exit(deadline.saturating_duration_since(Instant::now()));
            let _ = self.try_reap();
        }
        if !tree.iter().all(|p| p.wait_exit(deadline)) {
            signal_group(libc::SIGKILL);
            kill_and_wait(&tree, &self.what);
        }
        self.kill();
    }

    /// Kills the whole tree, reaps the child, and returns once every process
    /// of the tree has exited (bounded at 10 s). Idempotent.
    pub fn kill(&mut self) {
        if self.reaped.is_some() {
            return;
        }
        // Open a pidfd for every descendant first: SIGKILL is delivered
        // asynchronously, and the tree must be gone when this returns.
        let tree: Vec<PidFd> = descendants(self.child.id() as i32)
            .into_iter()
            .filter_map(PidFd::open)
            .collect();
        if let Some(pgid) = self.pgid {
            // SAFETY: plain syscall on the process group we created.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        let _ = self.child.kill();
        if let Ok(s) = self.child.wait() {
            self.reaped = Some(s);
        }
        kill_and_wait(&tree, &self.what);
        self.unregister();
    }

    fn unregister(&mut self) {
        if let Some(pgid) = self.pgid {
            // The namespace (if any) is gone with its init; sweep the group too
            // in case something escaped into it without a namespace.
            // SAFETY: plain syscall on the process group we created.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            if let Ok(mut live) = LIVE.lock() {
                live.retain(|p| *p != pgid);
            }
        }
    }
}

/// All descendants of `root` (not `root` itself), found through
/// `/proc/PID/task/TID/children`.
pub fn descendants(root: i32) -> Vec<i32> {
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(pid) = frontier.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for c in children.split_whitespace().filter_map(|c| c.parse().ok()) {
                found.push(c);
                frontier.push(c);
            }
        }
    }
    found
}

/// What the harness reads of a task's `stat` file (proc(5)): its state
/// and its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// Field 3: `R` running or runnable, `S` sleeping, `D` in an
    /// uninterruptible wait, `Z` a zombie, ...
    pub state: char,
    /// Field 22: when the task started, in clock ticks after boot.
    pub start_time: u64,
}

impl ProcStat {
    /// Reads `/proc/PID/stat` or `/proc/PID/task/TID/stat`; `None` when
    /// the task is gone (or the file does not parse).
    pub fn read(path: impl AsRef<std::path::Path>) -> Option<ProcStat> {
        ProcStat::parse(&std::fs::read_to_string(path).ok()?)
    }

    /// Parses the text of a `stat` file. The command name (field 2) may
    /// hold spaces and parentheses, so fields are counted from its last
    /// `)`: the state is the first after it, the start time the twentieth.
    pub fn parse(stat: &str) -> Option<ProcStat> {
        let mut fields = fields_after_comm(stat)?;
        let state = fields.next()?.chars().next()?;
        let start_time = fields.nth(18)?.parse().ok()?;
        Some(ProcStat { state, start_time })
    }
}

/// The fields of a `stat` file's text after the command name (field 2,
/// which may hold spaces and parentheses): field 3 (the state) first, so
/// field N is `nth(N - 3)`. None when the text has no `)`.
pub fn fields_after_comm(stat: &str) -> Option<std::str::SplitWhitespace<'_>> {
    Some(stat.rsplit_once(')')?.1.split_whitespace())
}

/// A task's `schedstat` file (`/proc/PID/schedstat`,
/// `/proc/thread-self/schedstat`): its CPU time and the time it waited
/// runnable (run_delay), ns. None when the file is gone or does not parse.
pub fn schedstat(path: impl AsRef<std::path::Path>) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut f = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    Some((f.next()??, f.next()??))
}

/// Whether process `pid` exists and is not a zombie (which still answers
/// `kill(pid, 0)`): for the tests that check nothing outlived its tree.
#[cfg(test)]
pub(crate) fn alive(pid: i32) -> bool {
    ProcStat::read(format!("/proc/{pid}/stat")).is_some_and(|s| s.state != 'Z')
}

/// A pidfd: a handle on a process that cannot be confused with a later
/// process reusing its pid, and that becomes readable when it exits.
struct PidFd {
    pid: i32,
    fd: i32,
}

impl PidFd {
    fn open(pid: i32) -> Option<PidFd> {
        // SAFETY: plain syscall; the fd is owned by the returned value.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
        (fd >= 0).then_some(PidFd { pid, fd })
    }

    /// True once the process has exited; false if `deadline` passed first.
    fn wait_exit(&self, deadline: Instant) -> bool {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd {
                fd: self.fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            let n = unsafe { libc::poll(&mut pfd, 1, ms) };
            if n > 0 {
                return true;
            }
            if n == 0 || left.is_zero() {
                return false;
            }
            // EINTR: go round again.
        }
    }
}

impl Drop for PidFd {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.fd) };
    }
}

/// SIGKILLs every process of `tree` through its pidfd and waits until
/// all have exited (bounded at 10 s), warning for each that has not; `what`
/// names the tree's root for that warning.
fn kill_and_wait(tree: &[PidFd], what: &str) {
    for p in tree {
        // SAFETY: kill on a pid we hold a pidfd for (it cannot be reused).
        unsafe { libc::syscall(libc::SYS_pidfd_send_signal, p.fd, libc::SIGKILL, 0, 0) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for p in tree {
        if !p.wait_exit(deadline) {
            tracing::warn!("process {} of {what} did not exit after SIGKILL", p.pid);
        }
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        if self.reaped.is_none() {
            tracing::debug!("stopping {} (dropped while running)", self.what);
        }
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_counts_fields_from_the_last_parenthesis_of_the_name() {
        // A command name with a space and a ')' of its own (proc(5)).
        let line =
            "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(
            ProcStat::parse(line),
            Some(ProcStat {
                state: 'S',
                start_time: 987654
            })
        );
        assert_eq!(ProcStat::parse("4242 (cut"), None);
        assert_eq!(ProcStat::parse("4242 (x) R 1 2"), None);
        let me = ProcStat::read("/proc/thread-self/stat").unwrap();
        assert_eq!(
            me.state, 'R',
            "the thread reads its own state while it runs"
        );
    }

    /// A grandchild that ignores the death of its parent still dies with the
    /// supervised tree.
    #[test]
    fn drop_kills_grandchildren() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let mut cmd = SupervisedCommand::new("sh", Terminal::Detached);
        cmd.arg("-c").arg(format!(
            "sh -c 'echo $$ > {p}.tmp; mv {p}.tmp {p}; exec sleep 1000' & wait",
            p = pidfile.display()
        ));
        let sup = cmd.spawn("test tree").unwrap();
        // Wait for the grandchild to announce itself (bounded).
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Ok(s) = std::fs::read_to_string(&pidfile) {
                break s.trim().parse::<i32>().unwrap();
            }
            assert!(Instant::now() < deadline, "grandchild never started");
            sup.poll_exit(Duration::from_millis(10));
        };
        // The pid seen inside a PID namespace is not the host's: find the
        // descendant whose innermost pid (last NSpid field) is the one written.
        let host_pid = descendants(sup.id() as i32)
            .into_iter()
            .find(|c| innermost_pid(*c) == Some(pid))
            .expect("the grandchild is among the descendants");
        assert!(alive(host_pid));
        drop(sup);
        assert!(!alive(host_pid), "grandchild {host_pid} survived the drop");
    }

    #[test]
    fn deadline_kills_and_reports_timeout() {
        let mut cmd = SupervisedCommand::new("sleep", Terminal::Detached);
        cmd.arg("1000");
        let mut sup = cmd.spawn("sleeper").unwrap();
        let started = Instant::now();
        let waited = sup
            .wait(Some(Instant::now() + Duration::from_millis(300)))
            .unwrap();
        assert!(matches!(waited, Waited::TimedOut), "{waited:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn exit_status_comes_back() {
        let mut cmd = SupervisedCommand::new("sh", Terminal::Detached);
        cmd.args(["-c", "exit 7"]);
        let mut sup = cmd.spawn("exit 7").unwrap();
        match sup.wait(None).unwrap() {
            Waited::Exited(s) => assert_eq!(s.code(), Some(7)),
            other => panic!("{other:?}"),
        }
    }

    fn innermost_pid(host_pid: i32) -> Option<i32> {
        let status = std::fs::read_to_string(format!("/proc/{host_pid}/status")).ok()?;
        let line = status.lines().find(|l| l.starts_with("NSpid:"))?;
        line.split_whitespace().last()?.parse().ok()
    }
}
