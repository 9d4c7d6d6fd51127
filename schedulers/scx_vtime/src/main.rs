//! scx_vtime: weighted virtual-time fairness honouring nice levels and
//! cgroup weights, with per-CPU queues and idle-CPU selection (see
//! `src/bpf/main.bpf.c`). Attaches, runs until SIGINT or SIGTERM or until
//! the BPF side exits, detaches, and prints the exit kind and message;
//! exits non-zero after an error exit.

mod bpf_skel;

use std::mem::MaybeUninit;

use anyhow::{bail, Result};
use bpf_skel::BpfSkelBuilder;
use clap::Parser;
use libbpf_rs::OpenObject;
use scx_sched_common::{announce_attached, ops_name, wait, Stop};
use scx_utils::{scx_ops_attach, scx_ops_load, scx_ops_open, uei_exited, uei_report};

/// Weighted virtual-time fairness with per-CPU queues.
#[derive(Parser)]
#[command(version)]
struct Opts {
    /// Time slice in microseconds.
    #[arg(long, default_value_t = 5000)]
    slice_us: u64,
}

fn main() -> Result<()> {
    let opts = Opts::parse();
    if opts.slice_us == 0 || opts.slice_us > 1_000_000 {
        bail!(
            "--slice-us {}: must be between 1 and 1000000",
            opts.slice_us
        );
    }
    let stop = Stop::install()?;
    let mut object = MaybeUninit::<OpenObject>::uninit();
    let builder = BpfSkelBuilder::default();
    let mut open = scx_ops_open!(
        builder,
        &mut object,
        vtime_ops,
        None::<libbpf_rs::libbpf_sys::bpf_object_open_opts>
    )?;
    open.maps.rodata_data.as_mut().unwrap().slice_ns = opts.slice_us * 1000;
    // Kernels that know cgroup weights as an opt-in (6.12: 1 << 16) warn and
    // ignore cpu.weight without it; later kernels dropped the flag.
    if let Ok(flag) = scx_utils::compat::read_enum("scx_ops_flags", "SCX_OPS_HAS_CGROUP_WEIGHT") {
        open.struct_ops.vtime_ops_mut().flags |= flag;
    }
    let mut skel = scx_ops_load!(open, vtime_ops, uei)?;
    let link = scx_ops_attach!(skel, vtime_ops)?;
    announce_attached("scx_vtime", &ops_name(&skel.struct_ops().vtime_ops().name));
    wait(&stop, || uei_exited!(&skel, uei), |_| false);
    drop(link);
    uei_report!(&skel, uei)?;
    Ok(())
}
