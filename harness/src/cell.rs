//! One cell: a scenario under a scheduler, in a VM of the scenario's
//! shape (host side). Boots the VM with the guest agent, reads what it
//! measured, judges it with `checks`, and writes the result document
//! (`report::CellResult`) into the cell's directory, atomically.
//!
//! Knows the VM runner, the scheduler lifecycle's guest spec and the
//! scenario; the guest side is `agent`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::agent::{AgentOutput, AgentSpec};
use crate::checks::{self, Evidence};
use crate::kernel::cache::write_atomic;
use crate::report::{CellResult, CellVerdict, SCHEMA};
use crate::scenario::Loaded;
use crate::scheduler::build::Built;
use crate::scheduler::lifecycle::GuestSpec;
use crate::vm::{self, GuestCommand, Outcome, VmSpec};

/// What a cell needs.
pub struct CellSpec<'a> {
    pub scenario: &'a Loaded,
    pub scheduler: &'a Built,
    /// Extra scheduler arguments (after the registry's).
    pub args: &'a [String],
    pub kernel: &'a Path,
    /// A harness binary the guest can run (this one).
    pub harness: &'a Path,
    /// The cell's directory: console log, shared directory, result.json.
    pub dir: PathBuf,
    pub accel: vm::AccelChoice,
}

/// How long the VM may take: the scenario once or twice, the scheduler's
/// attach, and room for boot and detach.
pub fn deadline(spec: &AgentSpec) -> Duration {
    let passes = if spec.baseline { 2 } else { 1 };
    spec.scenario.duration * passes
        + Duration::from_millis(spec.scheduler.attach_timeout_ms)
        + Duration::from_secs(90)
}

/// Runs the cell; `Err` only when it could not even start (bad input, no
/// QEMU). A VM that failed, an agent that died or a scheduler that never
/// attached is a result with verdict `error` or `fail`, never a pass.
pub fn run(c: &CellSpec) -> Result<CellResult> {
    let s = &c.scenario.scenario;
    let mut scheduler = GuestSpec::for_built(c.scheduler, c.args, None);
    scheduler.stop_grace_ms = 5_000;
    let agent_spec = AgentSpec {
        scenario: s.clone(),
        scheduler,
        baseline: s.needs_fair_baseline(),
    };
    std::fs::create_dir_all(&c.dir).with_context(|| format!("creating {}", c.dir.display()))?;
    let argv = vec![
        c.harness.display().to_string(),
        "guest".into(),
        "run-scenario".into(),
        "--spec-json".into(),
        serde_json::to_string(&agent_spec)?,
        "--out".into(),
        "@shared/agent.json".into(),
    ];
    let mut vm_spec = VmSpec::new(
        c.kernel.to_path_buf(),
        c.dir.clone(),
        GuestCommand::Exec(argv),
    );
    vm_spec.cpus = s.vm.cpus;
    vm_spec.memory = s.vm.memory.clone();
    vm_spec.accel = c.accel;
    vm_spec.timeout = Some(deadline(&agent_spec));
    let started_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let vm = vm::run(&vm_spec)?;
    let agent: Option<AgentOutput> = std::fs::read(vm.shared_dir.join("agent.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let (verdict, summary, checks) = match (&vm.outcome, &agent) {
        (Outcome::KernelCrash, _) => (
            CellVerdict::Error,
            format!(
                "the guest kernel crashed: {}",
                vm.crashes
                    .iter()
                    .find(|c| c.kind.is_fatal())
                    .map_or(String::new(), |c| c.text.clone())
            ),
            Vec::new(),
        ),
        (_, None) => (
            CellVerdict::Error,
            format!(
                "the guest agent wrote no result (VM: {:?}); console log: {}",
                vm.outcome,
                vm.console_log.display()
            ),
            Vec::new(),
        ),
        (_, Some(a)) => {
            let outcomes = checks::evaluate(&Evidence {
                scenario: s,
                agent: a,
                crashes: &vm.crashes,
            });
            let failed: Vec<&checks::Outcome> = outcomes.iter().filter(|o| !o.pass).collect();
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
                (
                    CellVerdict::Pass,
                    format!("{} check(s) passed", outcomes.len()),
                    outcomes,
                )
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
    let result = CellResult {
        schema: SCHEMA.into(),
        scenario: c.scenario.scenario.name.clone(),
        scenario_hash: c.scenario.hash.clone(),
        scenario_path: c.scenario.path.clone(),
        scheduler: c.scheduler.def.name.clone(),
        scheduler_version: c.scheduler.version.clone(),
        scheduler_args: c.args.to_vec(),
        kernel: crate::kernel::bzimage_release(c.kernel).unwrap_or_default(),
        kernel_id: crate::scheduler::status::kernel_id(c.kernel),
        accel: vm.accel.to_string(),
        cpus: s.vm.cpus,
        memory: s.vm.memory.clone(),
        host: hostname(),
        started_at,
        elapsed_s: vm.elapsed.as_secs_f64(),
        vm_outcome: format!("{:?}", vm.outcome),
        verdict,
        summary,
        checks,
        agent,
        console_log: vm.console_log.clone(),
        dir: c.dir.clone(),
    };
    write_atomic(
        &c.dir.join("result.json"),
        &serde_json::to_vec_pretty(&result)?,
    )?;
    Ok(result)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}
