//! Boot-time benchmark (`scx-harness bench boot`).
use anyhow::Result;

use crate::cli::VmOpts;
use crate::kernel::Kernel;

pub fn boot(_kernel: &Kernel, _opts: &VmOpts, _samples: usize) -> Result<i32> {
    anyhow::bail!("not yet")
}
