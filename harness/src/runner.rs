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

/// How long one cell may take: the scenario once or twice, the scheduler's
/// attach and detach, and the groups' exit.
pub fn deadline(spec: &crate::agent::AgentSpec) -> Duration {
    let passes = if spec.baseline { 2 } else { 1 };
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
    let shape = &first.scenario.scenario.vm;
    let host = match session.target {
        Target::Host(h) => Some(h),
        Target::Vm { .. } => None,
    };
    let batch = BatchSpec {
        cells: cells
            .iter()
            .map(|c| BatchCell {
                id: c.id(),
                spec: c.agent_spec(host.map(|h| h.cpus(shape.cpus)).as_deref()),
            })
            .collect(),
        host: host.map(|h| h.placement(shape.cpus)),
    };
    std::fs::create_dir_all(&session.dir)
        .with_context(|| format!("creating {}", session.dir.display()))?;
    let sdir = std::fs::canonicalize(&session.dir)?;
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
    let worker = {
        let finished = finished.clone();
        let (target, sdir) = (session.target, sdir.clone());
        let runner: Box<dyn FnOnce() -> Result<SessionEnd> + Send> = match target {
            Target::Vm { kernel, accel } => {
                let mut vm_spec = VmSpec::new(kernel.to_path_buf(), sdir, GuestCommand::Exec(argv));
                vm_spec.cpus = shape.cpus;
                vm_spec.memory = shape.memory.clone();
                vm_spec.topology = shape.topology;
                vm_spec.scratch_disk = cells
                    .iter()
                    .any(|c| c.scenario.scenario.needs_scratch_disk());
                vm_spec.accel = accel;
                vm_spec.timeout = Some(timeout);
                Box::new(move || vm::run(&vm_spec).map(|v| SessionEnd::from(&v)))
            }
            Target::Host(h) => {
                let run = h.agent_run(argv, shared.clone(), console_log.clone(), timeout);
                Box::new(move || run.run())
            }
        };
        std::thread::spawn(move || {
            let r = runner();
            finished.store(true, Ordering::SeqCst);
            r
        })
    };
    // Judge each cell as its agent output appears.
    let mut results: Vec<Option<CellResult>> = cells.iter().map(|_| None).collect();
    let mut judge_ready = |results: &mut Vec<Option<CellResult>>, end: Option<&SessionEnd>| {
        for (i, c) in cells.iter().enumerate() {
            if results[i].is_some() {
                continue;
            }
            let out = protocol::cell_dir(&shared, i).join(protocol::AGENT_OUTPUT);
            let Some(a) = std::fs::read(&out)
                .ok()
                .and_then(|b| serde_json::from_slice::<AgentOutput>(&b).ok())
            else {
                continue;
            };
            let console = cell::cell_console(&console_log, i, &c.id());
            let r = cell::judge(c, Some(a), &console, i, &ctx, end);
            done(&r);
            results[i] = Some(r);
        }
    };
    while !finished.load(Ordering::SeqCst) {
        judge_ready(&mut results, None);
        std::thread::sleep(Duration::from_millis(200));
    }
    let end = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the session's thread panicked"))??;
    judge_ready(&mut results, Some(&end));
    // What the session never finished.
    let reached: Vec<bool> = (0..cells.len())
        .map(|i| {
            protocol::cell_dir(&shared, i)
                .join(protocol::STARTED)
                .exists()
        })
        .collect();
    for (i, c) in cells.iter().enumerate() {
        if results[i].is_some() {
            continue;
        }
        let why = not_run_reason(&session.target, &end, reached[i], cells, &reached);
        let console = cell::cell_console(&end.console_log, i, &c.id());
        let mut r = cell::judge(c, None, &console, i, &ctx, Some(&end));
        r.verdict = if reached[i] {
            CellVerdict::Error
        } else {
            CellVerdict::NotRun
        };
        r.summary = why;
        cell::write_result(&r)?;
        done(&r);
        results[i] = Some(r);
    }
    Ok(results.into_iter().flatten().collect())
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
