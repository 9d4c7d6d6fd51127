//! Scheduling attributes of one task, by thread id (0: the calling
//! thread): its policy and real-time priority, its nice level and its CPU
//! affinity. The Linux system calls, each error naming the task and what
//! was asked. Used by the workload engine (a group's own threads), the
//! agent's timeline (any task of a group) and the scheduler lifecycle (a
//! loader's priority while it attaches).

use anyhow::{Context, Result};

use crate::scenario::Policy;

/// `SCHED_EXT` (include/uapi/linux/sched.h, since 6.12): the policy a
/// scheduler in partial mode (`SCX_OPS_SWITCH_PARTIAL`) schedules; with no
/// BPF scheduler attached, such a task runs in the fair class.
pub const SCHED_EXT: i32 = 7;

/// The real-time priority of a scheduler's loader while it attaches and
/// detaches (`lifecycle`): above every scenario task (their priorities stop
/// at [`MAX_TASK_PRIORITY`]) and below the agent's watch (99).
pub const LOADER_PRIORITY: i32 = 98;

/// The highest real-time priority a scenario task may have.
pub const MAX_TASK_PRIORITY: u32 = 97;

fn os_policy(p: Policy) -> i32 {
    match p {
        Policy::Other => libc::SCHED_OTHER,
        Policy::Batch => libc::SCHED_BATCH,
        Policy::Idle => libc::SCHED_IDLE,
        Policy::Fifo => libc::SCHED_FIFO,
        Policy::Rr => libc::SCHED_RR,
        Policy::Ext => SCHED_EXT,
    }
}

/// Sets task `tid`'s policy; `priority` is the real-time priority (1 to 99)
/// for `fifo` and `rr`, and must be 0 for the others.
///
/// Errors: EPERM without CAP_SYS_NICE, EINVAL for a policy the kernel does
/// not have (`ext` without CONFIG_SCHED_CLASS_EXT), ESRCH for a task gone.
pub fn set_policy(tid: u32, policy: Policy, priority: u32) -> Result<()> {
    set_raw(tid as i32, os_policy(policy), priority as i32).with_context(|| {
        format!(
            "setting policy {}{} on task {tid}",
            policy.name(),
            if priority > 0 {
                format!(" priority {priority}")
            } else {
                String::new()
            }
        )
    })
}

/// `sched_setscheduler(tid, policy, priority)` as the kernel takes it
/// (`policy` may carry `SCHED_RESET_ON_FORK`).
pub fn set_raw(tid: i32, policy: i32, priority: i32) -> std::io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: a valid sched_param; the kernel checks the rest.
    if unsafe { libc::sched_setscheduler(tid, policy, &param) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Sets task `tid`'s nice level (-20 to 19).
pub fn set_nice(tid: u32, nice: i32) -> Result<()> {
    // SAFETY: setpriority on one task id.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, nice) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("setting nice {nice} on task {tid}"));
    }
    Ok(())
}

/// Lets task `tid` run on `cpus` only (CPU numbers as the kernel counts
/// them).
pub fn set_affinity(tid: u32, cpus: &[u32]) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET stays inside it
    // for any CPU below CPU_SETSIZE (1024), which the callers' CPUs are.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for c in cpus.iter().filter(|c| **c < 1024) {
        unsafe { libc::CPU_SET(*c as usize, &mut set) };
    }
    // SAFETY: the set and its size.
    if unsafe { libc::sched_setaffinity(tid as i32, std::mem::size_of::<libc::cpu_set_t>(), &set) }
        != 0
    {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("setting the affinity of task {tid} to CPUs {cpus:?}"));
    }
    Ok(())
}

/// The thread id of the calling thread.
pub fn gettid() -> u32 {
    // SAFETY: no arguments.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}
