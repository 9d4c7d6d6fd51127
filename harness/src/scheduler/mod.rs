//! Schedulers under test: what they are, how they are built, and how they
//! end. Knows the kernel cache (a scheduler is built for a kernel); knows
//! nothing about how a VM is booted.

pub mod bpf_object;
pub mod build;
pub mod exit;
pub mod kernel_examples;
pub mod lifecycle;
pub mod registry;
pub mod status;
