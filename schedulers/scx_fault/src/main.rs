//! scx_fault: TEST FIXTURE. A global FIFO sched_ext scheduler with faults
//! the harness's tests switch on, one per check, to prove that each check
//! catches what it claims to (see `src/bpf/main.bpf.c`). Never run it on a
//! machine you care about: `--stall-comm` starves tasks on purpose.

mod bpf_skel;

use std::mem::MaybeUninit;
use std::time::Duration;

use anyhow::Result;
use bpf_skel::BpfSkelBuilder;
use clap::Parser;
use libbpf_rs::OpenObject;
use scx_sched_common::{announce_attached, ops_name, wait, Stop};
use scx_utils::{scx_ops_attach, scx_ops_load, scx_ops_open, uei_exited, uei_report};

/// TEST FIXTURE: a FIFO scheduler with injectable faults.
#[derive(Parser, Debug)]
#[command(version)]
struct Opts {
    /// Never dispatch tasks whose comm is NAME (a stall); a trailing '*'
    /// matches every comm that begins with the rest ("kworker/0:*").
    #[arg(long, value_name = "NAME", value_parser = comm)]
    stall_comm: Option<String>,
    /// Start jailing --stall-comm tasks only this many milliseconds after
    /// loading (a task sets itself up first).
    #[arg(long, value_name = "MS", requires = "stall_comm")]
    stall_after: Option<u64>,
    /// Call scx_bpf_error() this many milliseconds after loading.
    #[arg(long, value_name = "MS")]
    error_after: Option<u64>,
    /// Hold every enqueue of tasks whose comm is NAME for --delay-ms.
    #[arg(long, value_name = "NAME", value_parser = comm, requires = "delay_ms")]
    delay_comm: Option<String>,
    /// How long --delay-comm tasks are held, in milliseconds; 0 holds them
    /// not at all (the same scheduler as the baseline of an A/B).
    #[arg(long, value_name = "D", requires = "delay_comm")]
    delay_ms: Option<u64>,
    /// Abort the user-space process this many milliseconds after attaching
    /// (the kernel then unloads the scheduler).
    #[arg(long, value_name = "MS")]
    abort_after: Option<u64>,
    /// The kernel watchdog's timeout (ops.timeout_ms), at most 30000.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u32).range(1..=30_000))]
    timeout_ms: Option<u32>,
    /// Load a program the verifier refuses: attaching fails.
    #[arg(long)]
    reject_verifier: bool,
}

/// A comm is at most 15 bytes (TASK_COMM_LEN - 1).
fn comm(s: &str) -> std::result::Result<String, String> {
    if s.is_empty() || s.len() > 15 {
        return Err(format!(
            "{s:?}: a task comm has 1 to 15 bytes (TASK_COMM_LEN is 16)"
        ));
    }
    Ok(s.to_string())
}

fn fill(dst: &mut [i8; 16], s: &str) {
    for (d, b) in dst.iter_mut().zip(s.bytes()) {
        *d = b as i8;
    }
}

fn main() -> Result<()> {
    let opts = Opts::parse();
    let stop = Stop::install()?;
    let mut object = MaybeUninit::<OpenObject>::uninit();
    let builder = BpfSkelBuilder::default();
    let mut open = scx_ops_open!(
        builder,
        &mut object,
        fault_ops,
        None::<libbpf_rs::libbpf_sys::bpf_object_open_opts>
    )?;
    {
        let ro = open.maps.rodata_data.as_mut().unwrap();
        if let Some(c) = &opts.stall_comm {
            fill(&mut ro.stall_comm, c);
        }
        if let (Some(c), Some(ms)) = (&opts.delay_comm, opts.delay_ms) {
            fill(&mut ro.delay_comm, c);
            ro.delay_ns = ms * 1_000_000;
        }
        ro.error_after_ns = opts.error_after.unwrap_or(0) * 1_000_000;
        ro.stall_after_ns = opts.stall_after.unwrap_or(0) * 1_000_000;
        ro.reject = opts.reject_verifier;
    }
    if let Some(ms) = opts.timeout_ms {
        open.struct_ops.fault_ops_mut().timeout_ms = ms;
    }
    let mut skel = scx_ops_load!(open, fault_ops, uei)?;
    let link = scx_ops_attach!(skel, fault_ops)?;
    announce_attached("scx_fault", &ops_name(&skel.struct_ops().fault_ops().name));
    eprintln!("scx_fault: faults: {opts:?}");
    let abort_after = opts.abort_after.map(Duration::from_millis);
    wait(
        &stop,
        || uei_exited!(&skel, uei),
        |elapsed| {
            if abort_after.is_some_and(|a| elapsed >= a) {
                eprintln!("scx_fault: aborting as asked (--abort-after)");
                std::process::abort();
            }
            false
        },
    );
    drop(link);
    let bss = skel.maps.bss_data.as_ref().unwrap();
    eprintln!(
        "scx_fault: held {} released {} jailed {}",
        bss.nr_held, bss.nr_released, bss.nr_jailed
    );
    uei_report!(&skel, uei)?;
    Ok(())
}
