//! The one place that runs cells: a plan's cells grouped into sessions on
//! a target (a VM booted per session, or the machine itself), each
//! session's guest side (`guest run-batch`) started, every cell judged as
//! soon as its measurements appear, and cells a session never finished
//! given their reason. `run`, `compare` and the tests all call it; what a
//! person sees is rendered from its [`Event`]s.
//!
//! Knows the VM runner's interface, the host target and the protocol
//! between host side and guest side; judging is `cell`'s.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::agent::{AgentOutput, BatchCell, BatchSpec};
use crate::cell::{self, JudgeCtx, Planned};
use crate::error::{fail, Failure};
use crate::kernel::cache::write_atomic;
use crate::protocol;
use crate::report::{CellResult, CellVerdict};
use crate::vm::{self, GuestCommand, Outcome, SessionEnd, VmSpec};

/// Where a session runs.
#[derive(Clone, Copy)]
pub enum Target<'a> {
    /// A VM of the cells' shape, booted on `kernel` for the session.
    Vm {
        kernel: &'a Path,
        accel: vm::AccelChoice,
    },
    /// The machine the harness runs on, as the preflight found it.
    Host(&'a crate::host::Host),
}

impl<'a> Target<'a> {
    /// The machine itself when the host preflight gave `host`, else a VM
    /// of `kernel` with `accel`.
    pub fn of(
        host: Option<&'a crate::host::Host>,
        kernel: &'a Path,
        accel: vm::AccelChoice,
    ) -> Target<'a> {
        match host {
            Some(h) => Target::Host(h),
            None => Target::Vm { kernel, accel },
        }
    }
}

/// One session: a VM boot, or one agent on the host, running some cells
/// one after the other (schedulers hot-swapped between them).
pub struct Session<'a> {
    pub target: Target<'a>,
    /// A harness binary the guest side can run (this one).
    pub harness: &'a Path,
    /// The session's own directory (console log, shared directory).
    pub dir: PathBuf,
    /// The session's deadline; default: the sum of its cells' [`deadline`]s
    /// and a minute (a VM's boot).
    pub timeout: Option<Duration>,
}

/// What a run reports as it goes.
pub enum Event<'a> {
    /// Session `n` of `of` starts, with this cell first.
    Session { n: usize, of: usize, first: String },
    /// A cell's result, as soon as it is known.
    Cell(&'a CellResult),
}

/// How long one cell may take: the scenario under the scheduler, under
/// the fair class when it compares with it, and once more for an
/// application scenario's warm-up; the scheduler's attach and detach, and
/// the groups' exit.
pub fn deadline(spec: &crate::agent::AgentSpec) -> Duration {
    let passes = 1 + u32::from(spec.baseline) + u32::from(spec.scenario.runs_applications());
    spec.scenario.duration * passes
        + Duration::from_millis(spec.scheduler.attach_timeout_ms)
        + spec
            .swaps
            .iter()
            .map(|s| Duration::from_millis(s.to.attach_timeout_ms + s.to.stop_grace_ms))
            .sum::<Duration>()
        + Duration::from_secs(30)
}

/// The sessions `cells` need: one per VM shape (cells of one shape share a
/// session, schedulers hot-swapped), or one per cell.
pub fn sessions<'p, 'a>(cells: &'p [Planned<'a>], per_cell: bool) -> Vec<Vec<&'p Planned<'a>>> {
    let mut out: Vec<Vec<&Planned>> = Vec::new();
    for p in cells {
        let shape = &p.scenario.scenario.vm;
        match out
            .iter_mut()
            .find(|v| !per_cell && &v[0].scenario.scenario.vm == shape)
        {
            Some(v) => v.push(p),
            None => out.push(vec![p]),
        }
    }
    out
}

/// Runs `cells` in sessions on `target` (see [`sessions`]), each session's
/// directory `dir/sessions/N`, telling `events` as it goes. Cells of
/// sessions never started (interrupted) are `not run`. `Err` only when a
/// session could not even be started (bad input, no QEMU).
pub fn run_cells(
    cells: &[Planned],
    target: Target,
    harness: &Path,
    dir: &Path,
    per_cell: bool,
    timeout: Option<Duration>,
    mut events: impl FnMut(Event),
) -> Result<Vec<CellResult>> {
    let groups = sessions(cells, per_cell);
    let mut results = Vec::new();
    for (n, group) in groups.iter().enumerate() {
        if crate::process::interrupted() {
            for p in group {
                let r = crate::report::not_run(
                    p.scenario,
                    p.scheduler,
                    &p.dir,
                    "interrupted before its session started",
                );
                events(Event::Cell(&r));
                results.push(r);
            }
            continue;
        }
        let batch: Vec<Planned> = group.iter().map(|p| (*p).clone()).collect();
        let session = Session {
            target,
            harness,
            dir: dir.join(crate::report::SESSIONS_DIR).join(n.to_string()),
            timeout,
        };
        events(Event::Session {
            n: n + 1,
            of: groups.len(),
            first: batch[0].id(),
        });
        results.extend(run_session(&batch, &session, |r| events(Event::Cell(r)))?);
    }
    Ok(results)
}

/// A session's guest side, running on its own thread: a VM through
/// `vm::run`, or the host agent.
struct Running {
    shared: PathBuf,
    /// A serving session's queue directory.
    queue: Option<PathBuf>,
    console_log: PathBuf,
    ctx: JudgeCtx,
    finished: Arc<AtomicBool>,
    /// Set to stop the VM now (a serving session's cell past its deadline).
    stop: Arc<AtomicBool>,
    /// `None` once joined.
    worker: Option<std::thread::JoinHandle<Result<SessionEnd>>>,
}

/// Writes the batch (`cells`, or none for a serving session) and starts
/// the session's guest side in a VM of `shape` (with a scratch disk when
/// `scratch`), or on the host.
fn start(
    shape: &crate::scenario::VmShape,
    cells: &[Planned],
    scratch: bool,
    serve: bool,
    session: &Session,
) -> Result<Running> {
    let host = match session.target {
        Target::Host(h) => Some(h),
        Target::Vm { .. } => None,
    };
    let mut batch = BatchSpec {
        cells: cells
            .iter()
            .map(|c| BatchCell {
                id: c.id(),
                spec: c.agent_spec(host.map(|h| h.cpus(shape.cpus)).as_deref()),
            })
            .collect(),
        host: host.map(|h| h.placement(shape.cpus)),
        serve: None,
    };
    std::fs::create_dir_all(&session.dir)
        .with_context(|| format!("creating {}", session.dir.display()))?;
    let sdir = std::fs::canonicalize(&session.dir)?;
    if serve {
        // Made by `Live::run` once the guest side started: the VM runner
        // makes the shared directory afresh as the VM starts.
        batch.serve = Some(sdir.join("shared").join("queue"));
    }
    // The guest reads the spec from here: the host's files are its root.
    let spec_file = sdir.join(protocol::BATCH_SPEC);
    write_atomic(&spec_file, &serde_json::to_vec(&batch)?)?;
    let argv = vec![
        session.harness.display().to_string(),
        "guest".into(),
        "run-batch".into(),
        "--spec-file".into(),
        spec_file.display().to_string(),
    ];
    let timeout = session.timeout.unwrap_or_else(|| {
        batch
            .cells
            .iter()
            .map(|c| deadline(&c.spec))
            .sum::<Duration>()
            + Duration::from_secs(60)
    });
    let shared = sdir.join("shared");
    let console_log = sdir.join("console.log");
    let ctx = match session.target {
        Target::Vm { kernel, accel } => {
            let probe = vm::accel::resolve(accel, kernel, &crate::paths::cache_dir())?;
            JudgeCtx {
                shared: shared.clone(),
                kernel: crate::kernel::bzimage_release(kernel).unwrap_or_default(),
                kernel_id: crate::scheduler::status::kernel_id(kernel),
                kernel_name: crate::kernel::name_of_bzimage(kernel).unwrap_or_default(),
                accel: probe.accel.to_string(),
                target: crate::report::Target::Vm,
                host_cpus: None,
            }
        }
        Target::Host(h) => h.judge_ctx(shared.clone(), shape.cpus),
    };
    let finished = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let finished = finished.clone();
        let (target, sdir) = (session.target, sdir.clone());
        let runner: Box<dyn FnOnce() -> Result<SessionEnd> + Send> = match target {
            Target::Vm { kernel, accel } => {
                let mut vm_spec = VmSpec::new(kernel.to_path_buf(), sdir, GuestCommand::Exec(argv));
                vm_spec.cpus = shape.cpus;
                vm_spec.memory = shape.memory.clone();
                vm_spec.topology = shape.topology;
                vm_spec.scratch_disk = scratch;
                vm_spec.accel = accel;
                vm_spec.timeout = Some(timeout);
                vm_spec.stop = Some(stop.clone());
                Box::new(move || vm::run(&vm_spec).map(|v| SessionEnd::from(&v)))
            }
            Target::Host(h) => {
                let run = h
                    .agent_run(argv, shared.clone(), console_log.clone(), timeout)
                    .stop_on(stop.clone());
                Box::new(move || run.run())
            }
        };
        std::thread::spawn(move || {
            let r = runner();
            finished.store(true, Ordering::SeqCst);
            r
        })
    };
    Ok(Running {
        queue: batch.serve.clone(),
        shared,
        console_log,
        ctx,
        finished,
        stop,
        worker: Some(worker),
    })
}

impl Running {
    /// Cell `i`'s result if its agent output is there.
    fn judge_ready(&self, i: usize, c: &Planned, end: Option<&SessionEnd>) -> Option<CellResult> {
        let out = protocol::cell_dir(&self.shared, i).join(protocol::AGENT_OUTPUT);
        let a = std::fs::read(&out)
            .ok()
            .and_then(|b| serde_json::from_slice::<AgentOutput>(&b).ok())?;
        let console = cell::cell_console(&self.console_log, i, &c.id());
        Some(cell::judge(c, Some(a), &console, i, &self.ctx, end))
    }

    fn reached(&self, i: usize) -> bool {
        protocol::cell_dir(&self.shared, i)
            .join(protocol::STARTED)
            .exists()
    }

    /// Cell `i`'s result when the session ended without its output.
    fn judge_missing(
        &self,
        i: usize,
        c: &Planned,
        end: &SessionEnd,
        why: String,
    ) -> Result<CellResult> {
        let console = cell::cell_console(&end.console_log, i, &c.id());
        let mut r = cell::judge(c, None, &console, i, &self.ctx, Some(end));
        r.verdict = if self.reached(i) {
            CellVerdict::Error
        } else {
            CellVerdict::NotRun
        };
        r.summary = why;
        cell::write_result(&r)?;
        Ok(r)
    }

    /// Polls every 20 ms until `done()` or the session's end; past `by`,
    /// the session is stopped (and so ends).
    fn wait_until(&self, by: std::time::Instant, mut done: impl FnMut() -> bool) {
        while !done() && !self.finished.load(Ordering::SeqCst) {
            if std::time::Instant::now() >= by {
                self.stop.store(true, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the session's end (once).
    fn join(&mut self) -> Result<SessionEnd> {
        self.worker
            .take()
            .context("the session was already joined")?
            .join()
            .map_err(|_| anyhow::anyhow!("the session's thread panicked"))?
    }
}

/// Runs `cells` (all of one VM shape) in one session, calling `done` with
/// each result as soon as it is known. `Err` only when the session could
/// not even be started; cells it did not reach are results with verdict
/// `not_run` and the reason.
pub fn run_session(
    cells: &[Planned],
    session: &Session,
    mut done: impl FnMut(&CellResult),
) -> Result<Vec<CellResult>> {
    let first = cells.first().context("no cells to run")?;
    let scratch = cells
        .iter()
        .any(|c| c.scenario.scenario.needs_scratch_disk());
    let mut running = start(&first.scenario.scenario.vm, cells, scratch, false, session)?;
    // Judge each cell as its agent output appears.
    let mut results: Vec<Option<CellResult>> = cells.iter().map(|_| None).collect();
    let judge_ready = |running: &Running,
                       results: &mut Vec<Option<CellResult>>,
                       end: Option<&SessionEnd>,
                       done: &mut dyn FnMut(&CellResult)| {
        for (i, c) in cells.iter().enumerate() {
            if results[i].is_none() {
                if let Some(r) = running.judge_ready(i, c, end) {
                    done(&r);
                    results[i] = Some(r);
                }
            }
        }
    };
    while !running.finished.load(Ordering::SeqCst) {
        judge_ready(&running, &mut results, None, &mut done);
        std::thread::sleep(Duration::from_millis(200));
    }
    let end = running.join()?;
    judge_ready(&running, &mut results, Some(&end), &mut done);
    // What the session never finished.
    let reached: Vec<bool> = (0..cells.len()).map(|i| running.reached(i)).collect();
    for (i, c) in cells.iter().enumerate() {
        if results[i].is_some() {
            continue;
        }
        let why = not_run_reason(&session.target, &end, reached[i], cells, &reached);
        let r = running.judge_missing(i, c, &end, why)?;
        done(&r);
        results[i] = Some(r);
    }
    Ok(results.into_iter().flatten().collect())
}

/// A serving session: one VM (or host agent) kept across cells that are
/// queued one at a time as the caller decides them (`dev`: a cell per
/// build, the scheduler hot-swapped). Every cell must have the shape of
/// the first. Dropping it without [`Live::finish`] stops the VM.
pub struct Live<'s> {
    running: Running,
    target: Target<'s>,
    /// The shape and scratch disk of the session's VM.
    shape: crate::scenario::VmShape,
    scratch: bool,
    /// The next cell's index in the shared directory.
    next: usize,
    /// Set once the session ended.
    end: Option<SessionEnd>,
    /// Where the last cell's time went.
    timing: Option<CellTiming>,
}

/// Where a served cell's time went, from the shared directory's files
/// (their modification times, on the host's clock).
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct CellTiming {
    /// From the host queueing the cell to the guest starting it, seconds.
    pub pickup_s: f64,
    /// From the guest starting the cell to its measurements written,
    /// seconds.
    pub cell_s: f64,
    /// From the measurements written to the cell judged on the host,
    /// seconds.
    pub judging_s: f64,
}

impl<'s> Live<'s> {
    /// Boots the session for cells of VM shape `shape`, with a scratch
    /// disk when `scratch` (nothing runs yet). The session's deadline is
    /// `session.timeout`, default a day; each cell has its own
    /// ([`deadline`]).
    pub fn start(
        shape: &crate::scenario::VmShape,
        scratch: bool,
        session: &Session<'s>,
    ) -> Result<Live<'s>> {
        let s = Session {
            dir: session.dir.clone(),
            timeout: Some(session.timeout.unwrap_or(Duration::from_secs(24 * 3600))),
            ..*session
        };
        Ok(Live {
            running: start(shape, &[], scratch, true, &s)?,
            target: session.target,
            shape: shape.clone(),
            scratch,
            next: 0,
            end: None,
            timing: None,
        })
    }

    /// Why scenario `s` cannot run in this session (another VM shape, or a
    /// scratch disk the VM lacks), or `None`.
    pub fn misfit(&self, s: &crate::scenario::Scenario) -> Option<String> {
        if matches!(self.target, Target::Host(_)) {
            return None;
        }
        if s.vm != self.shape {
            return Some(format!(
                "{} needs a VM of another shape (`vm:`) than this session's",
                s.name
            ));
        }
        if s.needs_scratch_disk() && !self.scratch {
            return Some(format!(
                "{} needs a scratch disk (block_io), and this session's VM has none",
                s.name
            ));
        }
        None
    }

    /// How the session ended, once it has (also between cells: a VM past
    /// its deadline, a guest side that exited).
    pub fn ended(&mut self) -> Option<&SessionEnd> {
        if self.end.is_none() && self.running.finished.load(Ordering::SeqCst) {
            self.end = self.running.join().ok();
        }
        self.end.as_ref()
    }

    /// Where the last cell's time went (`None` before the first, or when
    /// it never started).
    pub fn timing(&self) -> Option<CellTiming> {
        self.timing
    }

    /// Runs `c` in the session and judges it. A cell that runs past its
    /// [`deadline`] stops the VM. Once the session has ended (a kernel
    /// crash, a stop), every cell is `not run` with the reason; see
    /// [`Live::ended`]. `Err` for a cell whose scenario is a
    /// [`Live::misfit`] or a file that cannot be written.
    pub fn run(&mut self, c: &Planned) -> Result<CellResult> {
        if let Some(why) = self.misfit(&c.scenario.scenario) {
            anyhow::bail!("{why}");
        }
        let i = self.next;
        if self.ended().is_none() {
            let host = match self.target {
                Target::Host(h) => Some(h.cpus(self.shape.cpus)),
                Target::Vm { .. } => None,
            };
            let cell = BatchCell {
                id: c.id(),
                spec: c.agent_spec(host.as_deref()),
            };
            let queue = self.queue()?;
            let deadline_at = std::time::Instant::now() + deadline(&cell.spec);
            let file = protocol::queued_cell(&queue, i);
            write_atomic(&file, &serde_json::to_vec(&cell)?)?;
            self.next += 1;
            let queued = std::time::SystemTime::now();
            self.timing = None;
            loop {
                let stopped = self.running.stop.load(Ordering::SeqCst);
                if let Some(r) = self.running.judge_ready(i, c, None) {
                    if stopped {
                        // Its result came as the VM was being stopped.
                        self.end = Some(self.running.join()?);
                    }
                    let dir = protocol::cell_dir(&self.running.shared, i);
                    let at = |name: &str| {
                        std::fs::metadata(dir.join(name))
                            .and_then(|m| m.modified())
                            .unwrap_or(queued)
                    };
                    let (started, output) = (at(protocol::STARTED), at(protocol::AGENT_OUTPUT));
                    let since = |a: std::time::SystemTime, b| {
                        a.duration_since(b).unwrap_or_default().as_secs_f64()
                    };
                    self.timing = Some(CellTiming {
                        pickup_s: since(started, queued),
                        cell_s: since(output, started),
                        judging_s: since(std::time::SystemTime::now(), output),
                    });
                    return Ok(r);
                }
                if self.running.finished.load(Ordering::SeqCst) {
                    self.end = Some(self.running.join()?);
                    break;
                }
                if std::time::Instant::now() >= deadline_at {
                    self.running.stop.store(true, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let end = self.end.as_ref().expect("the session ended");
        if let Some(r) = self.running.judge_ready(i, c, Some(end)) {
            return Ok(r);
        }
        let reached = self.running.reached(i);
        let why = not_run_reason(
            &self.target,
            end,
            reached,
            std::slice::from_ref(c),
            &[reached],
        );
        self.next = self.next.max(i + 1);
        self.running.judge_missing(i, c, end, why)
    }

    /// Whether any cell started in this session (a session that ended
    /// before one did never got going: a boot failure).
    pub fn started_any(&self) -> bool {
        self.running.reached(0)
    }

    /// The queue directory, made once a VM's guest command has started
    /// (the VM runner makes the shared directory afresh as it boots); the
    /// boot has the minute `run_session` gives it, then the VM is stopped.
    fn queue(&self) -> Result<PathBuf> {
        let queue = self.running.queue.clone().expect("a serving session");
        if !queue.is_dir() {
            if matches!(self.target, Target::Vm { .. }) {
                let started = self.running.shared.join(protocol::STARTED);
                self.running
                    .wait_until(std::time::Instant::now() + Duration::from_secs(60), || {
                        started.exists()
                    });
            }
            std::fs::create_dir_all(&queue)
                .with_context(|| format!("creating {}", queue.display()))?;
        }
        Ok(queue)
    }

    /// Asks the guest side to end after its current cell and waits for the
    /// session's end.
    pub fn finish(mut self) -> Result<SessionEnd> {
        if let Some(end) = self.end.take() {
            return Ok(end);
        }
        write_atomic(&protocol::quit_file(&self.queue()?), b"")?;
        // The guest ends after the cell it may be running; a session that
        // does not end within a minute of that is stopped.
        self.running
            .wait_until(std::time::Instant::now() + Duration::from_secs(60), || {
                false
            });
        self.running.join()
    }
}

/// Keeps `live` serving `scenarios` (one VM shape; a scratch disk when
/// any needs one): boots a session when there is none, or again when the
/// last one ended between cells (a guest kernel crash, a cell past its
/// deadline), each in `base.dir/vm-N` with N counted in `vms`; then
/// `Ok(Some(how))` says how that one ended. A session that ended before
/// any cell started in it (its boot failed) is not booted again: an error
/// of the class of its end (a kernel crash, or infrastructure), naming its
/// console log. Used by `dev` and `bisect`.
pub fn keep_serving<'s>(
    live: &mut Option<Live<'s>>,
    vms: &mut usize,
    scenarios: &[crate::scenario::Loaded],
    base: &Session<'s>,
) -> Result<Option<String>> {
    let mut ended = None;
    if live.as_mut().is_some_and(|l| l.ended().is_some()) {
        let last = live.take().expect("a session");
        let got_going = last.started_any();
        let end = last.finish().ok();
        let what = end.as_ref().map_or("?".into(), describe_end);
        if !got_going {
            let class = match end.as_ref().map(|e| &e.outcome) {
                Some(crate::vm::Outcome::KernelCrash) => Failure::KernelCrash,
                _ => Failure::Infrastructure,
            };
            return Err(fail(
                class,
                format!(
                    "the VM ended ({what}) before any cell started in it; stopping\n  console: {}",
                    end.as_ref()
                        .map_or(String::new(), |e| e.console_log.display().to_string())
                ),
            ));
        }
        ended = Some(what);
    }
    if live.is_none() {
        let session = Session {
            dir: base.dir.join(format!("vm-{}", *vms + 1)),
            ..*base
        };
        let scratch = scenarios.iter().any(|s| s.scenario.needs_scratch_disk());
        *live = Some(Live::start(&scenarios[0].scenario.vm, scratch, &session)?);
        *vms += 1;
    }
    Ok(ended)
}

/// How a session ended, in a few words and the crash's line.
pub fn describe_end(e: &SessionEnd) -> String {
    use crate::vm::Outcome;
    let crash = e
        .crashes
        .iter()
        .find(|c| c.kind.is_fatal())
        .map_or(String::new(), |c| format!(": {}", c.text));
    match &e.outcome {
        Outcome::KernelCrash => format!("the guest kernel crashed{crash}"),
        Outcome::TimedOut { .. } => "stopped: a cell ran past its deadline".into(),
        Outcome::Interrupted => "interrupted".into(),
        Outcome::InfraFailure { reason } => reason.clone(),
        Outcome::Exited { code } => format!("the guest side exited with status {code}"),
    }
}

impl Drop for Live<'_> {
    fn drop(&mut self) {
        if self.running.worker.is_some() {
            self.running.stop.store(true, Ordering::SeqCst);
            let _ = self.running.join();
        }
    }
}

/// Why a cell has no result.
fn not_run_reason(
    target: &Target,
    end: &SessionEnd,
    reached: bool,
    cells: &[Planned],
    all: &[bool],
) -> String {
    let session = match target {
        Target::Vm { .. } => "VM",
        Target::Host(_) => "host session",
    };
    let during = all
        .iter()
        .rposition(|r| *r)
        .map(|i| cells[i].id())
        .unwrap_or_else(|| "boot".into());
    let what = match &end.outcome {
        Outcome::KernelCrash => format!(
            "the guest kernel crashed during {during}: {}",
            end.crashes
                .iter()
                .find(|c| c.kind.is_fatal())
                .map_or(String::new(), |c| c.text.clone())
        ),
        Outcome::TimedOut { .. } => {
            format!("the {session} ran past its deadline during {during} and was killed")
        }
        Outcome::Interrupted => format!("interrupted (SIGINT/SIGTERM); the {session} was stopped"),
        Outcome::InfraFailure { reason } => format!("the {session} failed: {reason}"),
        Outcome::Exited { code } => {
            format!("the guest agent ended (status {code}) before this cell")
        }
    };
    if reached {
        format!("{what}; this cell started but did not finish")
    } else {
        format!("not run: {what}")
    }
}

/// Runs one cell in a session of its own.
pub fn run_one(c: &Planned, session: &Session) -> Result<CellResult> {
    let mut results = run_session(std::slice::from_ref(c), session, |_| {})?;
    results.pop().context("the session returned no result")
}
