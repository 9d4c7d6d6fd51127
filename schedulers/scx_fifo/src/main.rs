//! scx_fifo: a minimal global FIFO sched_ext scheduler (see
//! `src/bpf/main.bpf.c`). Attaches, runs until SIGINT or SIGTERM or until
//! the BPF side exits, detaches, and prints the exit kind and message
//! (`EXIT: reason (message)`); exits non-zero after an error exit.

mod bpf_skel;

use std::mem::MaybeUninit;

use anyhow::Result;
use bpf_skel::BpfSkelBuilder;
use clap::Parser;
use libbpf_rs::OpenObject;
use scx_sched_common::{announce_attached, ops_name, wait, Stop};
use scx_utils::{scx_ops_attach, scx_ops_load, scx_ops_open, uei_exited, uei_report};

/// A minimal global FIFO sched_ext scheduler.
#[derive(Parser)]
#[command(version)]
struct Opts {}

fn main() -> Result<()> {
    let _opts = Opts::parse();
    let stop = Stop::install()?;
    let mut object = MaybeUninit::<OpenObject>::uninit();
    let builder = BpfSkelBuilder::default();
    let mut open = scx_ops_open!(
        builder,
        &mut object,
        fifo_ops,
        None::<libbpf_rs::libbpf_sys::bpf_object_open_opts>
    )?;
    let mut skel = scx_ops_load!(open, fifo_ops, uei)?;
    let link = scx_ops_attach!(skel, fifo_ops)?;
    announce_attached("scx_fifo", &ops_name(&skel.struct_ops().fifo_ops().name));
    wait(&stop, || uei_exited!(&skel, uei), |_| false);
    drop(link);
    uei_report!(&skel, uei)?;
    Ok(())
}
