//! A `command` group's task: a real program (an application), with the
//! server it talks to started first and waited for, its output kept, and
//! the numbers it reports read from that output (`appmetric`).
//!
//! Every process it starts is a [`Supervised`] tree in a process group of
//! its own: stopped with SIGTERM, then SIGKILL a second later, when the
//! program ends or the group's stop comes, and killed if this task dies.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::sleep_until;
use crate::appmetric::{AppMetric, Direction};
use crate::probe::now_ns;
use crate::process::{Supervised, SupervisedCommand, Terminal};
use crate::scenario::{Ready, Server};

/// The environment variable naming an instance's scratch directory (an
/// empty directory made for it, removed when it ends), for the program and
/// its server: a database's data directory, a socket.
pub const SCRATCH_ENV: &str = "SCX_HARNESS_SCRATCH";

/// The environment variable naming what `cargo ci setup` prepared for the
/// bundled application scenarios ([`crate::paths::apps_dir`]).
pub const APPS_ENV: &str = "SCX_HARNESS_APPS";

/// How long a stopped program has between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// What one instance of an application did.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AppOutcome {
    /// Its exit status, when it exited by itself before the group's stop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    /// From its start (after the server was ready) to its exit, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_ns: Option<u64>,
    /// How long the server took to get ready, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_ready_ns: Option<u64>,
    /// The declared metrics read from its output, by name, each with its
    /// declared unit and direction (so a result says how to read itself).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, AppValue>,
    /// Why the application failed (it exited with another status, ran past
    /// the stop when it had to exit, its server never got ready, a metric
    /// could not be read), with the output's last lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// One metric's value as read, with its declaration's unit and direction.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AppValue {
    pub value: f64,
    pub unit: String,
    pub better: Direction,
}

/// What the task needs to run its application.
pub struct AppTask<'a> {
    pub argv: &'a [String],
    pub exit: Option<i32>,
    pub server: Option<&'a Server>,
    pub metrics: &'a [AppMetric],
    /// CLOCK_MONOTONIC ns at which the group stops.
    pub stop_at: u64,
    /// `$SCX_HARNESS_APPS`, when there is one.
    pub apps_dir: Option<&'a Path>,
    /// Where the output goes: `PREFIX.out`, and `PREFIX.server.out`.
    pub output: PathBuf,
}

/// Runs the application to its end or the stop. Never an `Err` for what
/// the application did (that is `failure`); `Err` only when the harness
/// could not do its part (create a file, a directory).
pub fn run(t: &AppTask) -> Result<AppOutcome> {
    let mut o = AppOutcome::default();
    let scratch = tempfile::Builder::new()
        .prefix("scx-harness-app-")
        .tempdir()
        .context("making the application's scratch directory")?;
    let mut server = match t.server {
        Some(s) => {
            let out = with_suffix(&t.output, ".server.out");
            let started = now_ns();
            match start_server(s, &out, scratch.path(), t.apps_dir, t.stop_at) {
                Ok(running) => {
                    o.server_ready_ns = Some(now_ns() - started);
                    Some(running)
                }
                Err(why) => {
                    o.failure = Some(format!(
                        "server {}: {why}; its output's last lines:\n{}",
                        s.argv[0],
                        tail_of(&out)
                    ));
                    return Ok(o);
                }
            }
        }
        None => None,
    };
    let out_path = with_suffix(&t.output, ".out");
    let mut child = spawn(
        t.argv,
        &out_path,
        scratch.path(),
        t.apps_dir,
        "the application",
    )?;
    let started = now_ns();
    // Where a program still running at the stop was, read just before it
    // is stopped: the one clue to a hang.
    let mut stuck = None;
    // Blocks on the program's pidfd: its wall time is its exit's, not a
    // poll's.
    let status = loop {
        let left = Duration::from_nanos(t.stop_at.saturating_sub(now_ns()));
        if let Some(st) = child.wait_for(left)? {
            break Some(st);
        }
        if now_ns() >= t.stop_at {
            stuck = Some(where_it_waits(child.id()));
            terminate(&mut child);
            break None;
        }
    };
    let ended = now_ns();
    let program = &t.argv[0];
    if let Some((s, why)) = t
        .server
        .zip(server.as_mut().and_then(RunningServer::exited))
    {
        o.exit_status = status.and_then(|st| st.code());
        o.failure = Some(format!(
            "server {}: {why}; its output's last lines:\n{}",
            s.argv[0],
            tail_of(&with_suffix(&t.output, ".server.out"))
        ));
        return Ok(o);
    }
    match status {
        Some(st) => {
            o.wall_ns = Some(ended - started);
            let code = st.code().unwrap_or(-1);
            o.exit_status = Some(code);
            let want = t.exit.unwrap_or(0);
            if code != want {
                let how = match st.code() {
                    Some(c) => format!("exited with status {c}"),
                    None => format!("was killed ({st})"),
                };
                let expected = match t.exit {
                    Some(w) => format!("not {w}"),
                    None => "before the group's stop".into(),
                };
                o.failure = Some(format!(
                    "{program} {how}, {expected}; its output's last lines:\n{}",
                    tail_of(&out_path)
                ));
                return Ok(o);
            }
        }
        None => {
            if let Some(want) = t.exit {
                o.failure = Some(format!(
                    "{program} was still running at the group's stop (it should have exited with status {want}); {}; its output's last lines:\n{}",
                    stuck.as_deref().unwrap_or("where it waited is unknown"),
                    tail_of(&out_path)
                ));
                return Ok(o);
            }
        }
    }
    if !t.metrics.is_empty() {
        let text = std::fs::read(&out_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .with_context(|| format!("reading {}", out_path.display()))?;
        let wall = o.wall_ns.map(Duration::from_nanos);
        for m in t.metrics {
            match m.read(&text, wall) {
                Ok(value) => {
                    o.metrics.insert(
                        m.name.clone(),
                        AppValue {
                            value,
                            unit: m.unit.clone(),
                            better: m.better,
                        },
                    );
                }
                Err(why) => {
                    o.failure = Some(format!("{program}: {why}"));
                    return Ok(o);
                }
            }
        }
    }
    Ok(o)
}

/// Starts `argv` in a process group of its own, stdin empty, stdout and
/// stderr into `out`, in `scratch` as its working directory (the guest's
/// root is read-only: stress-ng refuses to start in a directory it cannot
/// write), [`SCRATCH_ENV`] naming `scratch` and [`APPS_ENV`] `apps`.
fn spawn(
    argv: &[String],
    out: &Path,
    scratch: &Path,
    apps: Option<&Path>,
    what: &str,
) -> Result<Supervised> {
    let (program, args) = argv.split_first().context("an empty argv")?;
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut cmd = SupervisedCommand::new_same_pid_namespace(program, Terminal::Detached);
    cmd.args(args)
        .current_dir(scratch)
        .env(SCRATCH_ENV, scratch)
        .envs(apps.map(|a| (APPS_ENV, a)))
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file);
    cmd.spawn(&format!("{what} {program}"))
}

/// Where process `pid` and its threads are, for a program that did not
/// end: each task's state and kernel wait channel (`/proc/PID/task/TID/stat`
/// and `wchan`), and the main thread's kernel stack when readable
/// (`/proc/PID/stack`, root only), as one line plus the stack.
fn where_it_waits(pid: u32) -> String {
    let read = |p: String| std::fs::read_to_string(p).unwrap_or_default();
    let tasks: Vec<String> = crate::probe::tids_of(pid)
        .into_iter()
        .map(|tid| {
            let state = crate::process::ProcStat::read(format!("/proc/{pid}/task/{tid}/stat"))
                .map_or('?', |s| s.state);
            let wchan = read(format!("/proc/{pid}/task/{tid}/wchan"));
            let wchan = if wchan.is_empty() || wchan == "0" {
                "-".to_string()
            } else {
                wchan
            };
            format!("tid {tid} state {state} in {wchan}")
        })
        .collect();
    let stack = read(format!("/proc/{pid}/stack"));
    let mut s = format!("its tasks then: {}", tasks.join(", "));
    if !stack.trim().is_empty() {
        s.push_str(&format!(
            " (pid {pid}'s kernel stack: {})",
            stack.trim().replace('\n', " <- ")
        ));
    }
    s
}

/// SIGTERM to the tree, SIGKILL after [`STOP_GRACE`]; returns once the
/// whole tree has exited.
fn terminate(child: &mut Supervised) {
    child.stop(STOP_GRACE);
}

/// A running server, stopped (SIGTERM, then SIGKILL) when dropped.
struct RunningServer(Supervised);

impl RunningServer {
    /// Why the server is no longer running, if it exited.
    fn exited(&mut self) -> Option<String> {
        match self.0.wait_for(Duration::ZERO) {
            Ok(Some(st)) => Some(format!("exited ({st}) while the program ran")),
            Ok(None) => None,
            Err(e) => Some(format!("{e:#}")),
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        terminate(&mut self.0);
    }
}

/// Starts the server and waits until it is ready, it exits, its
/// `within` passes, or the group's stop comes; Err says which.
fn start_server(
    s: &Server,
    out: &Path,
    scratch: &Path,
    apps: Option<&Path>,
    stop_at: u64,
) -> Result<RunningServer, String> {
    if let Ready::Port(port) = s.ready {
        if port_open(port) {
            return Err(format!(
                "port {port} already accepts connections before the server started (another server, or one left running)"
            ));
        }
    }
    let mut child =
        spawn(&s.argv, out, scratch, apps, "the server").map_err(|e| format!("{e:#}"))?;
    let deadline = Instant::now() + s.within;
    let pattern = match &s.ready {
        Ready::Line(p) => Some(regex::Regex::new(p).map_err(|e| format!("ready line {p:?}: {e}"))?),
        _ => None,
    };
    loop {
        // Alive first: a server that failed (to bind its port, say) is
        // never "ready" because something else answers there.
        match child.wait_for(Duration::ZERO) {
            Ok(Some(st)) => return Err(format!("exited ({st}) before it was ready")),
            Ok(None) => {}
            Err(e) => return Err(format!("{e:#}")),
        }
        let ready = match &s.ready {
            Ready::Port(port) => port_open(*port),
            Ready::File(f) => expand_scratch(f, scratch).exists(),
            Ready::Line(_) => std::fs::read(out).is_ok_and(|b| {
                let text = String::from_utf8_lossy(&b);
                text.lines()
                    .any(|l| pattern.as_ref().is_some_and(|re| re.is_match(l)))
            }),
        };
        if ready {
            return Ok(RunningServer(child));
        }
        if Instant::now() >= deadline {
            terminate(&mut child);
            return Err(format!(
                "not ready within {} ({})",
                crate::units::format_duration(s.within),
                what_ready(&s.ready)
            ));
        }
        if now_ns() >= stop_at {
            terminate(&mut child);
            return Err(format!(
                "not ready by the group's stop ({})",
                what_ready(&s.ready)
            ));
        }
        sleep_until(now_ns() + 20_000_000);
    }
}

/// Whether something accepts a TCP connection on 127.0.0.1:`port`.
fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

fn what_ready(r: &Ready) -> String {
    match r {
        Ready::Port(p) => format!("port {p} refused connections"),
        Ready::File(f) => format!("{f} did not appear"),
        Ready::Line(p) => format!("no line matched {p:?}"),
    }
}

/// `$SCX_HARNESS_SCRATCH/...` with the scratch directory in its place.
fn expand_scratch(path: &str, scratch: &Path) -> PathBuf {
    let var = format!("${SCRATCH_ENV}");
    match path.strip_prefix(&var) {
        Some(rest) => scratch.join(rest.trim_start_matches('/')),
        None => PathBuf::from(path),
    }
}

/// `prefix` with `suffix` appended to its file name (a group name may hold
/// a dot, so no `with_extension`).
fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The last lines of a file, for a failure.
fn tail_of(path: &Path) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    crate::appmetric::tail(&text, 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task<'a>(argv: &'a [String], dir: &Path, stop_in: Duration) -> AppTask<'a> {
        AppTask {
            argv,
            exit: Some(0),
            server: None,
            metrics: &[],
            stop_at: now_ns() + stop_in.as_nanos() as u64,
            apps_dir: None,
            output: dir.join("g-0"),
        }
    }

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn metrics_are_read_from_the_output_and_a_miss_is_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let argv = sh("echo 'Time: 0.25'");
        let metrics: Vec<AppMetric> = serde_yaml::from_str(
            "[{ name: time, from: { pattern: 'Time: ([0-9.]+)' }, unit: s, better: lower }, { name: wall, from: wall_time, unit: s, better: lower }]",
        )
        .unwrap();
        let t = AppTask {
            metrics: &metrics,
            ..task(&argv, dir.path(), Duration::from_secs(10))
        };
        let o = run(&t).unwrap();
        assert_eq!(o.failure, None);
        assert_eq!(o.metrics["time"].value, 0.25);
        assert_eq!(o.metrics["time"].better, Direction::Lower);
        let wall = o.metrics["wall"].value;
        assert!(wall > 0.0 && wall < 10.0, "{o:?}");
        assert_eq!(o.exit_status, Some(0));

        let argv = sh("echo 'Segmentation fault'");
        let o = run(&AppTask {
            metrics: &metrics,
            ..task(&argv, dir.path(), Duration::from_secs(10))
        })
        .unwrap();
        let f = o.failure.unwrap();
        assert!(f.contains("metric time: pattern"), "{f}");
        assert!(f.contains("Segmentation fault"), "{f}");
    }

    #[test]
    fn a_wrong_exit_or_a_program_past_its_stop_is_a_failure_with_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let argv = sh("echo oops; exit 3");
        let o = run(&task(&argv, dir.path(), Duration::from_secs(10))).unwrap();
        assert_eq!(o.exit_status, Some(3));
        let f = o.failure.unwrap();
        assert!(
            f.contains("exited with status 3, not 0") && f.contains("oops"),
            "{f}"
        );

        let argv = sh("echo still here; exec sleep 30");
        let o = run(&task(&argv, dir.path(), Duration::from_millis(300))).unwrap();
        assert_eq!(o.exit_status, None);
        let f = o.failure.unwrap();
        assert!(f.contains("still running at the group's stop"), "{f}");
        // Where it waited: asleep, in the kernel's sleep.
        assert!(
            f.contains("its tasks then: tid ") && f.contains(" state S in "),
            "{f}"
        );

        // Without `exit`, running to the stop is what it should do.
        let t = AppTask {
            exit: None,
            ..task(&argv, dir.path(), Duration::from_millis(300))
        };
        assert_eq!(run(&t).unwrap().failure, None);
    }

    #[test]
    fn a_server_is_waited_for_and_stopped_with_its_tree() {
        let dir = tempfile::tempdir().unwrap();
        // The server makes a child that would outlive a plain kill, then
        // says it is ready by creating a file in the scratch directory.
        let server: Server = serde_yaml::from_str(&format!(
            "{{ argv: [sh, -c, 'sleep 60 & echo $! > {}/child; sleep 0.2; touch $SCX_HARNESS_SCRATCH/up; wait'], ready: {{ file: $SCX_HARNESS_SCRATCH/up }}, within: 5s }}",
            dir.path().display()
        ))
        .unwrap();
        let argv = sh("test -e $SCX_HARNESS_SCRATCH/up && echo 'tps = 12.5'");
        let metrics: Vec<AppMetric> = serde_yaml::from_str(
            "[{ name: tps, from: { pattern: 'tps = ([0-9.]+)' }, unit: tx/s, better: higher }]",
        )
        .unwrap();
        let t = AppTask {
            server: Some(&server),
            metrics: &metrics,
            ..task(&argv, dir.path(), Duration::from_secs(10))
        };
        let o = run(&t).unwrap();
        assert_eq!(o.failure, None, "{o:?}");
        assert_eq!(o.metrics["tps"].value, 12.5);
        assert_eq!(o.metrics["tps"].unit, "tx/s");
        assert!(o.server_ready_ns.unwrap() >= 200_000_000, "{o:?}");
        let child: i32 = std::fs::read_to_string(dir.path().join("child"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            !crate::process::alive(child),
            "the server's child {child} outlived it"
        );
    }

    #[test]
    fn a_server_that_never_gets_ready_fails_the_task_in_its_time() {
        let dir = tempfile::tempdir().unwrap();
        let server: Server = serde_yaml::from_str(
            "{ argv: [sh, -c, 'echo listening soon; exec sleep 60'], ready: { port: 1 }, within: 500ms }",
        )
        .unwrap();
        let argv = sh("echo never runs");
        let t = AppTask {
            server: Some(&server),
            ..task(&argv, dir.path(), Duration::from_secs(10))
        };
        let started = Instant::now();
        let o = run(&t).unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        let f = o.failure.unwrap();
        assert!(
            f.contains("not ready within 500ms (port 1 refused connections)"),
            "{f}"
        );
        assert!(f.contains("listening soon"), "{f}");
        assert!(!dir.path().join("g-0.out").exists());

        let server: Server = serde_yaml::from_str(
            "{ argv: [sh, -c, 'echo bad config; exit 1'], ready: { line: 'Ready' } }",
        )
        .unwrap();
        let o = run(&AppTask {
            server: Some(&server),
            ..task(&argv, dir.path(), Duration::from_secs(10))
        })
        .unwrap();
        let f = o.failure.unwrap();
        assert!(
            f.contains("exited (exit status: 1) before it was ready"),
            "{f}"
        );
        assert!(f.contains("bad config"), "{f}");
    }
}
