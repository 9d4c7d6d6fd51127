//! `scx-harness replay-check`: replays a scenario `record` wrote (one
//! `run` cell, under the fair class unless told otherwise) and scores each
//! group's replay against its recorded figures (`record::fidelity`).

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::run::RunArgs;
use crate::error::{fail, Failure};

#[derive(Debug, clap::Args)]
pub struct ReplayCheckArgs {
    /// `run`'s options: the scenario file `record` wrote (one), and
    /// optionally a scheduler (`-s`; default: the kernel's fair class),
    /// the kernel, the VM, `--out` (default:
    /// ./scx-runs/replay-check-TIMESTAMP), `--target host`.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Runs the replay and scores it: 0 when every figure is within its
/// mark, 1 when one is not (or the replay failed), 65 for a scenario
/// that is not one `record` wrote (or more than one), and `run`'s codes
/// for what stops the run itself.
pub fn run(mut args: ReplayCheckArgs) -> Result<i32> {
    let [file] = args.run.scenarios.as_slice() else {
        return Err(fail(
            Failure::BadInput,
            format!(
                "replay-check takes one scenario, {} given\n  fix: scx-harness replay-check captured.yaml",
                args.run.scenarios.len()
            ),
        ));
    };
    let loaded = crate::scenario::resolve(file)?;
    if loaded.scenario.recorded.is_empty() {
        return Err(fail(
            Failure::BadInput,
            format!(
                "{}: no `recorded` figures, so there is nothing to score a replay against\n  fix: record one with `scx-harness record ... -o FILE` and check that file",
                loaded.path.display()
            ),
        ));
    }
    if args.run.schedulers.len() > 1 {
        return Err(fail(
            Failure::BadInput,
            "replay-check replays under one scheduler\n  fix: give -s once, or not at all for the fair class".to_string(),
        ));
    }
    if args.run.schedulers.is_empty() {
        args.run.schedulers.push("default".into());
    }
    let out = args.run.out.clone().unwrap_or_else(|| {
        PathBuf::from("scx-runs").join(format!("replay-check-{}", super::run::timestamp()))
    });
    args.run.out = Some(out.clone());
    args.run.recording = crate::agent::PassRecording::Distributions;
    let code = super::run::run(args.run)?;
    let results = crate::report::load_run(&out)?;
    let result = results
        .iter()
        .find(|r| r.scenario == loaded.scenario.name)
        .with_context(|| format!("no cell of {} in {}", loaded.scenario.name, out.display()))?;
    let fidelity = match crate::record::fidelity::score(&loaded.scenario, result) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("replay-check: {e:#}");
            return Ok(1);
        }
    };
    let json = out.join("fidelity.json");
    crate::kernel::cache::write_atomic(&json, &serde_json::to_vec_pretty(&fidelity)?)?;
    let html = out.join("fidelity.html");
    crate::kernel::cache::write_atomic(&html, crate::html::fidelity_page(&fidelity).as_bytes())?;
    println!("\n{}", crate::record::fidelity::table(&fidelity));
    println!("scores: {}\npage:   {}", json.display(), html.display());
    Ok(if fidelity.pass && code == 0 { 0 } else { 1 })
}
