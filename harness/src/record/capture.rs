//! The recorder's BPF side in use: loads `record.bpf.c` (raw tracepoints,
//! so it runs on kernels without sched_ext, BPF trampolines or a mounted
//! tracefs; Linux 5.18 and later), selects the threads, drains the ring buffer for the
//! recording's length and hands every event to a [`super::Log`].
//!
//! Knows the BPF object's maps and event layout; knows nothing about
//! scenarios.

mod skel {
    #![allow(
        clippy::all,
        non_camel_case_types,
        non_snake_case,
        non_upper_case_globals,
        dead_code,
        unused_imports
    )]
    include!(concat!(env!("OUT_DIR"), "/record_skel.rs"));
}

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, OpenObject};

use super::{Event, EventKind};
use skel::RecordSkelBuilder;

/// Which threads the BPF side records.
pub enum Scope<'a> {
    /// Every thread of the machine (user space then filters by comm or
    /// cgroup).
    All,
    /// The thread groups of these tgids and the processes they fork.
    Tgids(&'a [u32]),
}

/// What a recording got besides its events.
pub struct Recorded {
    /// Events the ring buffer had no room for (the BPF side's `lost`).
    pub lost: u64,
    /// Threads or processes a full map could not take (not recorded).
    pub untracked: u64,
    /// How long it recorded (shorter than asked when interrupted).
    pub elapsed: Duration,
}

/// The size of `struct rec_event` in record.bpf.c.
const EVENT_BYTES: usize = 40;

fn decode(data: &[u8]) -> Option<Event> {
    if data.len() < EVENT_BYTES {
        return None;
    }
    let u32_at = |o: usize| u32::from_ne_bytes(data[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_ne_bytes(data[o..o + 8].try_into().unwrap());
    let kind = match u32_at(0) {
        1 => EventKind::Burst,
        2 => EventKind::Sleep,
        3 => EventKind::Delay,
        4 => EventKind::Exit,
        5 => EventKind::Fork,
        _ => return None,
    };
    Some(Event {
        kind,
        tid: u32_at(4),
        tgid: u32_at(8),
        a: u32_at(12),
        b: u32_at(16),
        ns: u64_at(24),
        at: u64_at(32),
    })
}

/// Records for `length` (or until SIGINT/SIGTERM): `attached` is called
/// once the programs are attached (where the recording's start is: take
/// the threads' starting CPU times there), and the processes it returns
/// are recorded too from then on (with [`Scope::Tgids`]: processes found
/// after the attach, whose children forked from now on are followed),
/// then `each` with every event
/// in the order the ring buffer holds them, and `tick` about every 100 ms
/// with the time recorded so far (false from it ends the recording
/// there).
///
/// Errors: the BPF object does not load or attach (libbpf's words
/// attached), or the ring buffer cannot be read.
pub fn record(
    scope: Scope,
    length: Duration,
    attached: impl FnOnce() -> Vec<u32>,
    mut each: impl FnMut(Event),
    mut tick: impl FnMut(Duration) -> bool,
) -> Result<Recorded> {
    let mut storage = MaybeUninit::<OpenObject>::uninit();
    let mut open = RecordSkelBuilder::default()
        .open(&mut storage)
        .context("opening the recorder's BPF object")?;
    open.maps
        .rodata_data
        .as_deref_mut()
        .context("the recorder's BPF object has no .rodata")?
        .all_threads = u8::from(matches!(scope, Scope::All));
    let (loaded, log) = crate::bpflog::capture(|| open.load());
    let mut skel = loaded.with_context(|| {
        format!(
            "loading the recorder's BPF programs; libbpf said:\n  {}",
            crate::bpflog::tail(&log, 20).join("\n  ")
        )
    })?;
    if let Scope::Tgids(tgids) = scope {
        for tgid in tgids {
            skel.maps
                .targets
                .update(&tgid.to_ne_bytes(), &[1], MapFlags::ANY)
                .context("adding a tgid to the recorder's targets")?;
        }
    }
    skel.attach()
        .context("attaching the recorder to the sched tracepoints (sched_switch, sched_waking, sched_wakeup, sched_migrate_task, sched_process_fork, sched_process_exit) and the interrupt tracepoints (irq_handler_entry/exit, softirq_entry/exit, hrtimer_expire_entry/exit; Linux 5.18 or later)")?;
    let got: RefCell<Vec<Event>> = RefCell::new(Vec::new());
    let mut builder = libbpf_rs::RingBufferBuilder::new();
    builder
        .add(&skel.maps.events, |data: &[u8]| {
            if let Some(e) = decode(data) {
                got.borrow_mut().push(e);
            }
            0
        })
        .context("reading the recorder's ring buffer")?;
    let ring = builder
        .build()
        .context("mapping the recorder's ring buffer")?;
    let more = attached();
    if matches!(scope, Scope::Tgids(_)) {
        for tgid in more {
            skel.maps
                .targets
                .update(&tgid.to_ne_bytes(), &[1], MapFlags::ANY)
                .context("adding a tgid to the recorder's targets")?;
        }
    }
    let started = Instant::now();
    while started.elapsed() < length && !crate::process::interrupted() {
        let left = length.saturating_sub(started.elapsed());
        // An interrupted poll (EINTR) is the signal handler's doing: the
        // loop's condition sees it.
        let _ = ring.poll(left.min(Duration::from_millis(100)));
        for e in got.borrow_mut().drain(..) {
            each(e);
        }
        if !tick(started.elapsed()) {
            break;
        }
    }
    let elapsed = started.elapsed();
    // What is in the buffer was recorded before the stop.
    let _ = ring.consume();
    for e in got.borrow_mut().drain(..) {
        each(e);
    }
    drop(ring);
    let (lost, untracked) = skel
        .maps
        .bss_data
        .as_ref()
        .map_or((0, 0), |b| (b.lost, b.untracked));
    Ok(Recorded {
        lost,
        untracked,
        elapsed,
    })
}
