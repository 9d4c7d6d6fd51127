//! Cells (a scenario under a scheduler), host side: several run one after
//! the other in one VM (hot-swap: schedulers attach and detach without a
//! reboot), each judged with `checks` as soon as the guest finishes it,
//! each written as its own result document with its share of the console.
//!
//! Knows the VM runner, the scheduler lifecycle's guest spec and the
//! scenario; the guest side is `agent::run_batch`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::agent::{self, AgentOutput, AgentSpec, BatchCell, BatchSpec};
use crate::checks::{self, Evidence};
use crate::kernel::cache::write_atomic;
use crate::report::{CellResult, CellVerdict, SCHEMA};
use crate::scenario::Loaded;
use crate::scheduler::build::Built;
use crate::scheduler::lifecycle::{expected_failure, GuestSpec};
use crate::vm::console::{self, CrashLine};
use crate::vm::{self, GuestCommand, Outcome, VmResult, VmSpec};

/// One cell to run.
#[derive(Clone)]
pub struct Planned<'a> {
    pub scenario: &'a Loaded,
    pub scheduler: &'a Built,
    /// Extra scheduler arguments (after the registry's).
    pub args: Vec<String>,
    /// What each of the scenario's swaps attaches, in order.
    pub swap_to: Vec<&'a Built>,
    /// Where the cell's result, console and files go.
    pub dir: PathBuf,
}

impl Planned<'_> {
    pub fn id(&self) -> String {
        format!(
            "{}/{}",
            self.scheduler.def.name, self.scenario.scenario.name
        )
    }

    fn agent_spec(&self) -> AgentSpec {
        let s = &self.scenario.scenario;
        AgentSpec {
            scenario: s.clone(),
            scheduler: GuestSpec::for_built(self.scheduler, &self.args, None),
            baseline: s.needs_fair_baseline(),
            swaps: s
                .swaps
                .iter()
                .zip(&self.swap_to)
                .map(|(sw, b)| agent::SwapPlan {
                    at_ns: sw.at.as_nanos() as u64,
                    to: GuestSpec::for_built(b, &[], None),
                })
                .collect(),
        }
    }
}

/// Where and how the VM runs.
pub struct VmPlan<'a> {
    pub kernel: &'a Path,
    /// A harness binary the guest can run (this one).
    pub harness: &'a Path,
    /// The VM's own directory (console log, shared directory).
    pub dir: PathBuf,
    pub accel: vm::AccelChoice,
    /// The VM's deadline; default: the sum of its cells' [`deadline`]s and
    /// a minute for the boot.
    pub timeout: Option<Duration>,
}

/// How long one cell may take: the scenario once or twice, the scheduler's
/// attach and detach, and the groups' exit.
pub fn deadline(spec: &AgentSpec) -> Duration {
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

/// Runs `cells` (all of one VM shape) in one VM, calling `done` with each
/// result as soon as it is known. `Err` only when the VM could not even be
/// started (bad input, no QEMU); cells the VM did not reach are results
/// with verdict `not_run` and the reason.
pub fn run_batch(
    cells: &[Planned],
    vmp: &VmPlan,
    mut done: impl FnMut(&CellResult),
) -> Result<Vec<CellResult>> {
    let first = cells.first().context("no cells to run")?;
    let shape = &first.scenario.scenario.vm;
    let batch = BatchSpec {
        cells: cells
            .iter()
            .map(|c| BatchCell {
                id: c.id(),
                spec: c.agent_spec(),
            })
            .collect(),
    };
    std::fs::create_dir_all(&vmp.dir).with_context(|| format!("creating {}", vmp.dir.display()))?;
    // The guest reads the spec from here: the host's files are its root.
    let spec_file = std::fs::canonicalize(&vmp.dir)?.join("batch.json");
    write_atomic(&spec_file, &serde_json::to_vec(&batch)?)?;
    let argv = vec![
        vmp.harness.display().to_string(),
        "guest".into(),
        "run-batch".into(),
        "--spec-file".into(),
        spec_file.display().to_string(),
    ];
    let mut vm_spec = VmSpec::new(
        vmp.kernel.to_path_buf(),
        vmp.dir.clone(),
        GuestCommand::Exec(argv),
    );
    vm_spec.cpus = shape.cpus;
    vm_spec.memory = shape.memory.clone();
    vm_spec.accel = vmp.accel;
    vm_spec.timeout = Some(vmp.timeout.unwrap_or_else(|| {
        batch
            .cells
            .iter()
            .map(|c| deadline(&c.spec))
            .sum::<Duration>()
            + Duration::from_secs(60)
    }));
    let shared = std::fs::canonicalize(&vmp.dir)?.join("shared");
    let probe = vm::accel::resolve(vmp.accel, vmp.kernel, &crate::paths::cache_dir())?;
    let ctx = JudgeCtx {
        shared: shared.clone(),
        kernel: crate::kernel::bzimage_release(vmp.kernel).unwrap_or_default(),
        kernel_id: crate::scheduler::status::kernel_id(vmp.kernel),
        kernel_name: crate::kernel::name_of_bzimage(vmp.kernel).unwrap_or_default(),
        accel: probe.accel.to_string(),
    };
    let finished = Arc::new(AtomicBool::new(false));
    let vm_thread = {
        let finished = finished.clone();
        std::thread::spawn(move || {
            let r = vm::run(&vm_spec);
            finished.store(true, Ordering::SeqCst);
            r
        })
    };
    // Judge each cell as its agent.json appears.
    let mut results: Vec<Option<CellResult>> = cells.iter().map(|_| None).collect();
    let mut judge_ready = |results: &mut Vec<Option<CellResult>>, vm: Option<&VmResult>| {
        for (i, c) in cells.iter().enumerate() {
            if results[i].is_some() {
                continue;
            }
            let out = agent::cell_dir(&shared, i).join("agent.json");
            let Some(a) = std::fs::read(&out)
                .ok()
                .and_then(|b| serde_json::from_slice::<AgentOutput>(&b).ok())
            else {
                continue;
            };
            let console = cell_console(&vmp.dir.join("console.log"), i, &c.id());
            let r = judge(c, Some(a), &console, i, &ctx, vm);
            done(&r);
            results[i] = Some(r);
        }
    };
    while !finished.load(Ordering::SeqCst) {
        judge_ready(&mut results, None);
        std::thread::sleep(Duration::from_millis(200));
    }
    let vm = vm_thread
        .join()
        .map_err(|_| anyhow::anyhow!("the VM thread panicked"))??;
    judge_ready(&mut results, Some(&vm));
    // What the VM never finished.
    let reached: Vec<bool> = (0..cells.len())
        .map(|i| agent::cell_dir(&shared, i).join("started").exists())
        .collect();
    for (i, c) in cells.iter().enumerate() {
        if results[i].is_some() {
            continue;
        }
        let why = not_run_reason(&vm, reached[i], cells, &reached);
        let console = cell_console(&vm.console_log, i, &c.id());
        let mut r = judge(c, None, &console, i, &ctx, Some(&vm));
        r.verdict = if reached[i] {
            CellVerdict::Error
        } else {
            CellVerdict::NotRun
        };
        r.summary = why;
        write_result(&r)?;
        done(&r);
        results[i] = Some(r);
    }
    Ok(results.into_iter().flatten().collect())
}

/// Why a cell has no result.
fn not_run_reason(vm: &VmResult, reached: bool, cells: &[Planned], all: &[bool]) -> String {
    let during = all
        .iter()
        .rposition(|r| *r)
        .map(|i| cells[i].id())
        .unwrap_or_else(|| "boot".into());
    let what = match &vm.outcome {
        Outcome::KernelCrash => format!(
            "the guest kernel crashed during {during}: {}",
            vm.crashes
                .iter()
                .find(|c| c.kind.is_fatal())
                .map_or(String::new(), |c| c.text.clone())
        ),
        Outcome::TimedOut { .. } => {
            format!("the VM ran past its deadline during {during} and was killed")
        }
        Outcome::Interrupted => "interrupted (SIGINT/SIGTERM); the VM was stopped".into(),
        Outcome::InfraFailure { reason } => format!("the VM failed: {reason}"),
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

/// The part of the console log between cell `i`'s markers (to the end when
/// it never ended), or the whole log for a one-cell VM without markers.
fn cell_console(console_log: &Path, i: usize, id: &str) -> String {
    let text = std::fs::read_to_string(console_log).unwrap_or_default();
    let (begin, end) = (agent::marker(i, id, "begins"), agent::marker(i, id, "ends"));
    let mut lines = text.lines();
    let mut part = Vec::new();
    if !text.contains(&begin) {
        return String::new();
    }
    for l in lines.by_ref() {
        if l.contains(&begin) {
            part.push(l);
            break;
        }
    }
    for l in lines {
        part.push(l);
        if l.contains(&end) {
            break;
        }
    }
    part.join("\n") + "\n"
}

/// What every cell of a VM shares.
struct JudgeCtx {
    shared: PathBuf,
    kernel: String,
    kernel_id: String,
    kernel_name: String,
    accel: String,
}

fn mtime_secs(p: &Path) -> Option<f64> {
    let t = std::fs::metadata(p).ok()?.modified().ok()?;
    Some(t.duration_since(UNIX_EPOCH).ok()?.as_secs_f64())
}

/// Judges one cell and writes its directory: result.json, the console part
/// (console.log), the kernel's lines in it (dmesg.txt), the scheduler's
/// output, the scenario as run and what the guest measured.
fn judge(
    c: &Planned,
    agent: Option<AgentOutput>,
    console_part: &str,
    i: usize,
    ctx: &JudgeCtx,
    vm: Option<&VmResult>,
) -> CellResult {
    let s = &c.scenario.scenario;
    let crashes: Vec<CrashLine> = console::scan(console_part);
    let (verdict, summary, checks) = match &agent {
        None => (
            CellVerdict::Error,
            "the guest agent wrote no result for this cell".to_string(),
            Vec::new(),
        ),
        Some(a) => {
            let outcomes = checks::evaluate(&Evidence {
                scenario: s,
                agent: a,
                crashes: &crashes,
                claims: c.scheduler.def.claims.as_deref(),
            });
            let failed: Vec<&checks::Outcome> = outcomes.iter().filter(|o| o.fails()).collect();
            let pass_errors: Vec<String> = a.passes.iter().flat_map(|p| p.errors.clone()).collect();
            if let Some(e) = &a.error {
                (
                    CellVerdict::Error,
                    format!("the guest agent failed: {e}"),
                    outcomes,
                )
            } else if !pass_errors.is_empty() && failed.is_empty() {
                (
                    CellVerdict::Error,
                    format!("the measurement is incomplete: {}", pass_errors.join("; ")),
                    outcomes,
                )
            } else if failed.is_empty() {
                // What the scheduler does not claim is said, with its
                // numbers, even though it does not fail the cell.
                let unclaimed: Vec<&checks::Outcome> =
                    outcomes.iter().filter(|o| o.unclaimed.is_some()).collect();
                let held = outcomes.len() - unclaimed.len();
                let summary = match unclaimed.is_empty() {
                    true => format!("{held} check(s) passed"),
                    false => {
                        let mut props: Vec<String> = unclaimed.iter().map(|o| o.status()).collect();
                        props.dedup();
                        format!(
                            "{held} check(s) passed; {}\n{}",
                            props.join(", "),
                            unclaimed
                                .iter()
                                .map(|o| o.line())
                                .collect::<Vec<_>>()
                                .join("\n")
                        )
                    }
                };
                (CellVerdict::Pass, summary, outcomes)
            } else {
                (
                    CellVerdict::Fail,
                    failed
                        .iter()
                        .map(|o| o.line())
                        .collect::<Vec<_>>()
                        .join("\n"),
                    outcomes,
                )
            }
        }
    };
    // Evidence that cannot be saved (a full disk) is named in the summary,
    // with where the rest is; the run goes on.
    let mut unsaved: Vec<String> = Vec::new();
    let mut save = |name: &str, bytes: &[u8]| {
        if let Err(e) = std::fs::create_dir_all(&c.dir)
            .map_err(anyhow::Error::from)
            .and_then(|()| write_atomic(&c.dir.join(name), bytes))
        {
            unsaved.push(format!("{name} ({})", e.root_cause()));
        }
    };
    save("console.log", console_part.as_bytes());
    let dmesg: Vec<&str> = console_part
        .lines()
        .filter(|l| l.trim_start().starts_with('['))
        .collect();
    save("dmesg.txt", (dmesg.join("\n") + "\n").as_bytes());
    save(
        "scenario.yaml",
        serde_yaml::to_string(s).unwrap_or_default().as_bytes(),
    );
    let cdir = agent::cell_dir(&ctx.shared, i);
    let began = mtime_secs(&cdir.join("started"));
    let ended = mtime_secs(&cdir.join("agent.json"));
    for f in std::fs::read_dir(&cdir).into_iter().flatten().flatten() {
        let name = f.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".stdout")
            || name.ends_with(".stderr")
            || name.ends_with(".out")
            || name == "agent.json"
        {
            if let Err(e) = std::fs::copy(f.path(), c.dir.join(&*name)) {
                unsaved.push(format!("{name} ({e}; still in {})", cdir.display()));
            }
        }
    }
    let mut r = CellResult {
        schema: SCHEMA.into(),
        scenario: s.name.clone(),
        scenario_hash: c.scenario.hash.clone(),
        scenario_path: c.scenario.path.clone(),
        scheduler: c.scheduler.def.name.clone(),
        scheduler_version: c.scheduler.version.clone(),
        scheduler_args: c.args.clone(),
        kernel: ctx.kernel.clone(),
        kernel_id: ctx.kernel_id.clone(),
        kernel_name: ctx.kernel_name.clone(),
        accel: ctx.accel.clone(),
        cpus: s.vm.cpus,
        memory: s.vm.memory.clone(),
        host: hostname(),
        started_at: began.map_or_else(now_secs, |b| b as u64),
        elapsed_s: match (began, ended) {
            (Some(b), Some(e)) => (e - b).max(0.0),
            _ => 0.0,
        },
        vm_outcome: vm
            .map(|v| format!("{:?}", v.outcome))
            .unwrap_or_else(|| "running".into()),
        verdict,
        summary,
        checks,
        agent,
        console_log: c.dir.join("console.log"),
        dir: c.dir.clone(),
    };
    // A failure the registry expects of this scheduler (its own bug, written
    // down) is still a failure; the summary says it is the known one. The
    // registry is asked about the cell's scheduler's own lifecycle verdict.
    let def = &c.scheduler.def;
    let expected = r
        .agent
        .as_ref()
        .and_then(|a| a.scheduler.as_ref())
        .filter(|rep| r.verdict == CellVerdict::Fail && rep.name == def.name)
        .and_then(|rep| expected_failure(def, &rep.verdict, &rep.loader_log));
    if let Some(reason) = expected {
        r.summary = format!(
            "{}\nknown issue of {} (schedulers/registry.yaml): {}",
            r.summary,
            def.name,
            reason.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }
    if !unsaved.is_empty() {
        r.summary = format!(
            "{}\nnot saved in {}: {}",
            r.summary,
            c.dir.display(),
            unsaved.join(", ")
        );
    }
    if let Err(e) = write_result(&r) {
        tracing::warn!(
            "{}: result.json not saved ({e:#}); it is still in the run's results.json",
            c.dir.display()
        );
    }
    r
}

/// Writes `r` as its directory's `result.json` (atomic), creating the
/// directory if needed.
pub fn write_result(r: &CellResult) -> Result<()> {
    std::fs::create_dir_all(&r.dir).with_context(|| format!("creating {}", r.dir.display()))?;
    write_atomic(&r.dir.join("result.json"), &serde_json::to_vec_pretty(r)?)
}

/// Runs one cell in a VM of its own.
pub fn run(c: &Planned, vmp: &VmPlan) -> Result<CellResult> {
    let mut results = run_batch(std::slice::from_ref(c), vmp, |_| {})?;
    results.pop().context("the batch returned no result")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
