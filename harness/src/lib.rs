//! scx-harness: boot sched_ext kernels in QEMU through virtme-ng and test
//! BPF schedulers in them. See ARCHITECTURE.md for the map.

pub mod error;
pub mod paths;
pub mod probe;
pub mod process;
pub mod protocol;

pub use error::{classify, fail, ExitCode, Failure};
pub mod agent;
pub mod appmetric;
pub mod bench;
pub mod bisect;
pub mod bpflog;
pub mod cell;
pub mod checks;
pub mod cli;
pub mod compare;
pub mod datafile;
pub mod dev;
#[doc(hidden)]
pub mod fuzz;
pub mod history;
pub mod host;
pub mod html;
pub mod kernel;
pub mod kmsg;
pub mod matrix;
pub mod metric;
pub mod ops;
pub mod progress;
pub mod record;
pub mod report;
pub mod rundir;
pub mod runner;
pub mod scenario;
pub mod sched;
pub mod scheduler;
pub mod selftests;
pub mod stats;
pub mod sweep;
pub mod units;
pub mod vm;
pub mod vng;
pub mod workload;
