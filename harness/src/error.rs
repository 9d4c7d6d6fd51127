//! Failure classes and the process exit codes they map to.
//!
//! Callers that must tell failures apart (the CLI's exit code, a test that
//! expects an infrastructure failure) look for a [`Failure`] anywhere in an
//! `anyhow` chain with [`classify`]. Everything else is plain `anyhow` with
//! context.

use std::fmt;

/// Exit codes of the `scx-harness` binary. A guest command's own status is
/// passed through unchanged by `scx-harness vm`; the harness's own failures
/// use the sysexits.h codes below so scripts can tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Success,
    /// The harness worked and the thing under test did not: a scheduler
    /// failed to attach, crashed or left early; a check failed.
    Failed,
    /// Bad input: a missing or malformed file, an unknown kernel, a bad
    /// argument value (EX_DATAERR).
    BadInput,
    /// The VM could not do its job: QEMU would not start, the boot never
    /// reached the guest command, or the VM ran past its deadline
    /// (EX_UNAVAILABLE, as vmtest does).
    Infrastructure,
    /// The guest kernel crashed (panic, oops, BUG) (EX_SOFTWARE).
    KernelCrash,
    /// A tool the harness runs on the host failed, e.g. the kernel build
    /// (EX_SOFTWARE is taken; EX_CANTCREAT-adjacent 71 = EX_OSERR).
    HostTool,
    /// Interrupted by SIGINT or SIGTERM (128 + SIGINT, as shells report).
    Interrupted,
}

impl ExitCode {
    pub fn code(self) -> i32 {
        match self {
            ExitCode::Success => 0,
            ExitCode::Failed => 1,
            ExitCode::BadInput => 65,
            ExitCode::Infrastructure => 69,
            ExitCode::KernelCrash => 70,
            ExitCode::HostTool => 71,
            ExitCode::Interrupted => 130,
        }
    }
}

/// A failure whose class matters to the caller. Attach it as the root of an
/// `anyhow` chain (`Err(Failure::BadInput.into()).context(..)`) or wrap it
/// around a message with [`fail`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("the scheduler or scenario under test failed")]
    UnderTest,
    #[error("bad input")]
    BadInput,
    #[error("infrastructure failure")]
    Infrastructure,
    #[error("kernel crash in the guest")]
    KernelCrash,
    #[error("host tool failed")]
    HostTool,
    #[error("interrupted")]
    Interrupted,
}

impl Failure {
    pub fn exit_code(self) -> ExitCode {
        match self {
            Failure::UnderTest => ExitCode::Failed,
            Failure::BadInput => ExitCode::BadInput,
            Failure::Infrastructure => ExitCode::Infrastructure,
            Failure::KernelCrash => ExitCode::KernelCrash,
            Failure::HostTool => ExitCode::HostTool,
            Failure::Interrupted => ExitCode::Interrupted,
        }
    }
}

/// A classified error with a human message: the message is what the user
/// reads, the class decides the exit code.
#[derive(Debug)]
pub struct Classified {
    pub class: Failure,
    pub message: String,
}

impl fmt::Display for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Classified {}

/// Build a classified error: `return Err(fail(Failure::BadInput, format!(..)))`.
pub fn fail(class: Failure, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Classified {
        class,
        message: message.into(),
    })
}

/// The class of the first classified error in the chain, if any.
pub fn classify(err: &anyhow::Error) -> Option<Failure> {
    err.chain().find_map(|e| {
        e.downcast_ref::<Classified>()
            .map(|c| c.class)
            .or_else(|| e.downcast_ref::<Failure>().copied())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn class_survives_context() {
        let err = Err::<(), _>(fail(Failure::BadInput, "no such file"))
            .context("reading fragment")
            .unwrap_err();
        assert_eq!(classify(&err), Some(Failure::BadInput));
        assert_eq!(classify(&anyhow::anyhow!("plain")), None);
    }

    #[test]
    fn exit_codes_are_distinct() {
        let all = [
            ExitCode::Success,
            ExitCode::Failed,
            ExitCode::BadInput,
            ExitCode::Infrastructure,
            ExitCode::KernelCrash,
            ExitCode::HostTool,
            ExitCode::Interrupted,
        ];
        let mut codes: Vec<i32> = all.iter().map(|c| c.code()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }
}
