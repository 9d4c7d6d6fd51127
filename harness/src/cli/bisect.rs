//! `scx-harness bisect`: the first bad commit of a scheduler's git tree,
//! or the first bad version of a scheduler published on crates.io, between
//! a good and a bad end (the search and the judging: `crate::bisect`).
//! Each commit is built in a worktree of its own (the user's checkout
//! untouched) the way `dev --tree` builds that tree, and cached by commit;
//! each version is installed as the registry's `crate` sources are, and
//! cached by version. Every step runs in one serving session (one VM, the
//! scheduler hot-swapped), beside the good end when a metric decides.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::compare::{parse_runs, Runs, StatsOpts};
use super::{TargetOpts, VmOpts};
use crate::bisect::git::{self, Rev, Worktree};
use crate::bisect::{combine, judge, Criterion, Judgement, Mark, Next, Search, Shift};
use crate::cell::Planned;
use crate::dev::source::{DevSource, Recipe};
use crate::error::{fail, Failure};
use crate::kernel::{Cache, Kernel};
use crate::progress::Progress;
use crate::report::CellResult;
use crate::runner::{Live, Session};
use crate::scenario::Loaded;
use crate::scheduler::build::{Artifact, Built};
use crate::scheduler::registry::{Def, Kind};

/// What makes a commit bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BadIf {
    /// A check of a scenario fails in any of the commit's runs (or the
    /// scheduler fails: it does not attach, exits, stalls a task).
    Checks,
    /// Worse than the good end by compare's statistics, on --metric (by
    /// default any key metric); each step runs beside the good end.
    Worse,
}

#[derive(Debug, clap::Args)]
pub struct BisectArgs {
    #[command(flatten)]
    pub registry: super::schedulers::RegistryOpt,
    /// The scheduler, as it is named in --tree: a cargo package of an
    /// scx-style checkout, NAME.bpf.c, or a kernel tree's example; without
    /// --tree, a crate on crates.io (a registry entry's `crate` source
    /// names it). Its registry entry (arguments, expectations) applies when
    /// it has one.
    pub scheduler: String,
    /// Scenario files or bundled names (default: idle-baseline). All must
    /// have one VM shape.
    pub scenarios: Vec<String>,
    /// The scheduler's git repository (never modified: each commit is
    /// checked out in a worktree of its own). Without it the steps are the
    /// scheduler's versions published on crates.io, yanked ones left out.
    #[arg(long, value_name = "DIR")]
    pub tree: Option<PathBuf>,
    /// A Linux kernel's git repository (never modified): the steps are its
    /// commits, each kernel built with the harness's sched_ext
    /// configuration in one worktree of the search's own (incrementally on
    /// the last, cached by commit) and booted in a VM of its own, the
    /// scheduler (a registry entry) built for each. Bad only by
    /// `--bad-if checks`: each step's kernel is its own, so the good end's
    /// runs cannot share its VM.
    #[arg(long, value_name = "DIR", conflicts_with = "tree")]
    pub kernel_tree: Option<PathBuf>,
    /// A commit (id, branch, tag) where the scheduler is good; without
    /// --tree or --kernel-tree, a published version (1.0.5).
    #[arg(long, value_name = "REV")]
    pub good: String,
    /// A later commit, or a newer version, where it is bad.
    #[arg(long, value_name = "REV")]
    pub bad: String,
    /// What makes a commit or version bad.
    #[arg(long, value_enum, default_value_t = BadIf::Checks)]
    pub bad_if: BadIf,
    /// With --bad-if worse: the metric that decides, as `compare` names it
    /// (e.g. run_delay.nappers.p99); default: any key metric.
    #[arg(long, value_name = "NAME")]
    pub metric: Option<String>,
    /// Runs per step (with --bad-if worse: per side), or `auto`: with
    /// checks one, with worse rounds of 4 per side until the verdict
    /// settles, at most --max-runs.
    #[arg(long, value_parser = parse_runs, default_value = "auto")]
    pub runs: Runs,
    /// The most runs per side `--runs auto` takes at a step.
    #[arg(long, default_value_t = 16)]
    pub max_runs: usize,
    #[command(flatten)]
    pub stats: StatsOpts,
    /// Where the search goes (default: ./scx-runs/bisect-TIMESTAMP).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Also record every run in this history database.
    #[arg(long, value_name = "DB")]
    pub record: Option<PathBuf>,
    #[command(flatten)]
    pub vm: VmOpts,
    #[command(flatten)]
    pub target: TargetOpts,
}

/// A round of `--runs auto` with a metric: 4 per side, the fewest with
/// which a Mann-Whitney test can reach p < 0.05 (4 against 4: at best
/// 2/70 = 0.029, two-sided).
const AUTO_ROUND: usize = 4;

/// A commit's build as cached: the artifact's file name in the entry and
/// the version (content hash) it was built as.
#[derive(Serialize, Deserialize)]
struct CachedBuild {
    file: String,
    object: bool,
    version: String,
}

/// One step as tested, for the output and `bisect.json`.
#[derive(Debug, Clone, Serialize)]
struct StepRecord {
    /// 0: the good end; n: the bad end.
    step: usize,
    rev: Rev,
    mark: Mark,
    /// Per scenario, why.
    why: Vec<(String, Judgement)>,
    runs: usize,
    good_runs: usize,
    seconds: f64,
    /// Where the step's runs are.
    evidence: PathBuf,
}

#[derive(Serialize)]
struct Outcome<'a> {
    scheduler: &'a str,
    /// The git tree searched, or None for crates.io's versions.
    tree: Option<&'a Path>,
    /// The crate whose published versions were searched.
    #[serde(rename = "crate")]
    krate: Option<&'a str>,
    /// The kernel tree whose commits were searched.
    #[serde(skip_serializing_if = "Option::is_none")]
    kernel_tree: Option<&'a Path>,
    good: &'a Rev,
    bad: &'a Rev,
    criterion: String,
    /// `found`, `range`, `undecided`, `ends` (the ends are not as
    /// stated), or `stopped` (an error or an interrupt; `message` says
    /// which).
    result: &'static str,
    /// The first bad commit or version, when found.
    first_bad: Option<&'a Rev>,
    /// The commits or versions that hold the change, oldest first, when
    /// not found.
    range: Vec<&'a Rev>,
    message: String,
    steps: &'a [StepRecord],
    seconds: f64,
}

/// What the steps are.
enum Axis {
    /// The commits of a git tree.
    Tree(PathBuf),
    /// The published versions of a crate.
    Crate(String),
    /// The commits of a kernel's git tree: each step its own kernel.
    Kernel(PathBuf),
}

struct Bisect<'a> {
    args: &'a BisectArgs,
    criterion: Criterion,
    axis: Axis,
    /// revs[0]: the good end; revs[n]: the bad end.
    revs: Vec<Rev>,
    def: Option<&'a Def>,
    /// The kernel every step runs on; None on the kernel axis, where each
    /// step's is in `step_kernels`.
    kernel: Option<&'a Kernel>,
    cache: &'a Cache,
    registry: &'a crate::scheduler::registry::Registry,
    scenarios: Vec<Loaded>,
    dir: PathBuf,
    serving: &'a super::Serving,
    /// The session runs are served from: the one kernel's; on the kernel
    /// axis the current step's (None before the first).
    session: Option<Session<'a>>,
    live: Option<Live<'a>>,
    vms: usize,
    /// On the kernel axis: each step's kernel once built (index: step).
    step_kernels: &'a [std::cell::OnceCell<Kernel>],
    /// On the kernel axis: the one worktree every step's kernel is built
    /// in, and the step whose kernel `session` boots.
    kernel_worktree: Option<Worktree>,
    vm_step: Option<usize>,
    /// Builds by step; `Err`: why it did not build.
    builds: HashMap<usize, std::result::Result<Built, String>>,
    /// Every run so far, for results.json and history.
    results: Vec<CellResult>,
    /// Per scenario, the metrics worse at the bad end than at the good end
    /// (with `--bad-if worse`): what the steps between are judged on.
    ends: HashMap<String, Vec<Shift>>,
    steps: Vec<StepRecord>,
}

impl<'a> Bisect<'a> {
    /// A step's name in paths: a commit's short id, or a version whole.
    fn short(&self, rev: &Rev) -> String {
        match self.axis {
            Axis::Tree(_) | Axis::Kernel(_) => rev.id.chars().take(12).collect(),
            Axis::Crate(_) => rev.id.clone(),
        }
    }

    /// "commit" or "version".
    fn unit(&self) -> &'static str {
        match self.axis {
            Axis::Tree(_) | Axis::Kernel(_) => "commit",
            Axis::Crate(_) => "version",
        }
    }

    /// The kernel every step runs on (the tree and crate axes).
    fn one_kernel(&self) -> &'a Kernel {
        self.kernel
            .expect("the tree and crate axes run every step on one kernel")
    }

    fn say(&self, line: impl AsRef<str>) {
        println!("{}", line.as_ref());
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
    }

    /// The build of step `i`, from the cache when this commit was built
    /// before for this kernel, else in a worktree (then cached).
    fn build(&mut self, i: usize) -> Result<std::result::Result<Built, String>> {
        if let Some(b) = self.builds.get(&i) {
            return Ok(b.clone());
        }
        let rev = self.revs[i].clone();
        if let Axis::Crate(name) = &self.axis {
            let got = self.install(name.clone(), &rev)?;
            self.builds.insert(i, got.clone());
            return Ok(got);
        }
        if let Axis::Kernel(tree) = &self.axis {
            let tree = tree.clone();
            let got = self.build_kernel_step(&tree, i)?;
            self.builds.insert(i, got.clone());
            return Ok(got);
        }
        let kernel = self.one_kernel();
        let kernel_key = kernel.entry.as_ref().map_or_else(
            || kernel.bzimage.display().to_string(),
            |e| e.meta.key.clone(),
        );
        let key = crate::kernel::cache::sha256_hex(
            format!("{}\n{}\n{}", rev.id, self.args.scheduler, kernel_key).as_bytes(),
        )[..16]
            .to_string();
        let entry = self.cache.root().join("bisect").join(&key);
        let got = match self.cached(&entry) {
            Some(b) => {
                self.say(format!("  {}: built before (cached)", rev.line));
                Ok(b)
            }
            None => self.build_fresh(&rev, &entry)?,
        };
        self.builds.insert(i, got.clone());
        Ok(got)
    }

    /// Version `rev` of crate `name`, installed as a registry `crate`
    /// source is (`cargo install --locked`, cached by version).
    fn install(&mut self, name: String, rev: &Rev) -> Result<std::result::Result<Built, String>> {
        use crate::scheduler::registry::{CrateSource, Source};
        let def = Def {
            source: Some(Source::Crate(CrateSource {
                name,
                version: rev.id.clone(),
            })),
            ..self
                .def
                .cloned()
                .unwrap_or_else(|| Def::named(&self.args.scheduler, Kind::Binary))
        };
        let ctx = crate::scheduler::build::BuildCtx {
            cache: self.cache,
            kernel: self.one_kernel().entry.as_ref(),
            registry: self.registry,
        };
        let was = crate::scheduler::build::cached(&def, &ctx).is_some();
        let started = Instant::now();
        let mut progress = Progress::new("bisect build");
        let built = crate::scheduler::build::build(&def, &ctx, &mut progress);
        drop(progress);
        if crate::process::interrupted() {
            return Err(fail(Failure::Interrupted, "interrupted during a build"));
        }
        Ok(match built {
            Ok(b) => {
                self.say(match was {
                    true => format!("  {}: built before (cached)", rev.line),
                    false => format!(
                        "  {}: installed in {:.1} s",
                        rev.line,
                        started.elapsed().as_secs_f64()
                    ),
                });
                Ok(b)
            }
            // The compiler refused it: a skip, as `git bisect skip`.
            Err(e) if compile_failure(&format!("{e:#}")) => Err(install_failure(&format!("{e:#}"))),
            // Anything else (no network, a full disk) is no verdict on the
            // version: the search stops, with what ran so far written.
            Err(e) => {
                return Err(e.context(format!("installing {} (not a compiler error)", rev.line)))
            }
        })
    }

    fn cached(&self, entry: &Path) -> Option<Built> {
        let meta: CachedBuild =
            serde_json::from_slice(&std::fs::read(entry.join("built.json")).ok()?).ok()?;
        let path = entry.join(&meta.file);
        let kind = if meta.object {
            Kind::BpfObject
        } else {
            Kind::Binary
        };
        path.is_file().then(|| Built {
            def: Def {
                kind,
                ..self
                    .def
                    .cloned()
                    .unwrap_or_else(|| Def::named(&self.args.scheduler, kind))
            },
            artifact: if meta.object {
                Artifact::Object(path)
            } else {
                Artifact::Binary(path)
            },
            version: meta.version,
        })
    }

    /// Step `i` of the kernel axis: the kernel at that commit, built in
    /// the search's one worktree of `tree` (incrementally on the last
    /// step's build; cached by commit, so a commit built before is not
    /// built again), then the scheduler built for it at once (a kernel
    /// example is built from the tree, which the next step checks out
    /// anew). `Err`: why the step is skipped (make or Kconfig refused the
    /// commit, or the scheduler does not build for it).
    fn build_kernel_step(
        &mut self,
        tree: &Path,
        i: usize,
    ) -> Result<std::result::Result<Built, String>> {
        let rev = self.revs[i].clone();
        let started = Instant::now();
        match &self.kernel_worktree {
            Some(wt) => wt.checkout(&rev)?,
            None => {
                self.kernel_worktree =
                    Some(Worktree::add(tree, &rev, &self.dir.join("kernel-tree"))?);
            }
        }
        let wt = self
            .kernel_worktree
            .as_ref()
            .expect("checked out above")
            .path
            .clone();
        let spec = crate::kernel::BuildSpec::for_tree(&wt)?;
        let mut progress = Progress::new("bisect kernel");
        let built = crate::kernel::build(&spec, self.cache, &mut progress);
        drop(progress);
        if crate::process::interrupted() {
            return Err(fail(
                Failure::Interrupted,
                "interrupted during a kernel build",
            ));
        }
        let entry = match built {
            Ok(e) => e,
            // make or Kconfig refused this commit: a skip, as `git bisect
            // skip` (anything else, a full disk, stops the search).
            Err(e)
                if matches!(
                    crate::error::classify(&e),
                    Some(Failure::HostTool | Failure::BadInput)
                ) =>
            {
                return Ok(Err(format!(
                    "the kernel did not build: {}",
                    build_failure(&e)
                )))
            }
            Err(e) => return Err(e.context(format!("building the kernel at {}", rev.line))),
        };
        self.say(format!(
            "  {}: kernel {} ready in {:.0} s",
            rev.line,
            entry.meta.release,
            started.elapsed().as_secs_f64()
        ));
        let cells = self.step_kernels;
        let kernel = cells[i].get_or_init(|| Kernel {
            bzimage: entry.bzimage(),
            entry: Some(entry),
        });
        let Some(def) = self.def else {
            return Err(fail(
                Failure::BadInput,
                format!(
                    "{} is not in the registry: with --kernel-tree the scheduler is built for each kernel from its registry entry\n  fix: name one of `scx-harness schedulers list`, or add it to the registry",
                    self.args.scheduler
                ),
            ));
        };
        let ctx = crate::scheduler::build::BuildCtx {
            cache: self.cache,
            kernel: kernel.entry.as_ref(),
            registry: self.registry,
        };
        let mut progress = Progress::new("bisect scheduler");
        let built = crate::scheduler::build::build(def, &ctx, &mut progress);
        drop(progress);
        Ok(built.map_err(|e| format!("{} did not build for it: {}", def.name, build_failure(&e))))
    }

    /// On the kernel axis: the runs from here on are on step `i`'s kernel,
    /// in a VM of its own (the last step's VM is shut down first).
    fn boot_step(&mut self, i: usize) {
        if self.vm_step == Some(i) {
            return;
        }
        if let Some(live) = self.live.take() {
            let _ = live.finish();
        }
        let cells = self.step_kernels;
        let kernel = cells[i]
            .get()
            .expect("a step's kernel is built before it runs");
        self.session = Some(self.serving.session(kernel, self.args.vm.accel));
        self.vm_step = Some(i);
    }

    fn build_fresh(
        &mut self,
        rev: &Rev,
        entry: &Path,
    ) -> Result<std::result::Result<Built, String>> {
        let Axis::Tree(tree) = &self.axis else {
            unreachable!("only a tree's commits are built in worktrees")
        };
        let tree = tree.clone();
        let short = self.short(rev);
        let wt = Worktree::add(&tree, rev, &self.dir.join("worktrees").join(&short))?;
        let mut source = match DevSource::resolve(
            self.def,
            &self.args.scheduler,
            Some(&wt.path),
            self.one_kernel().entry.as_ref(),
            self.cache,
            self.registry.dir(),
        ) {
            Ok(s) => s,
            Err(e) => return Ok(Err(format!("{e:#}").lines().next().unwrap_or("").into())),
        };
        if let Recipe::Cargo { target_dir, .. } = &mut source.recipe {
            // One target directory for the tree's worktrees: each commit's
            // build is incremental on the last.
            let tree_key = crate::kernel::cache::sha256_hex(tree.to_string_lossy().as_bytes());
            *target_dir = Some(
                self.cache
                    .root()
                    .join("bisect")
                    .join(format!("target-{}", &tree_key[..16])),
            );
        }
        let out = self.dir.join("builds").join(&short);
        let started = Instant::now();
        let mut progress = Progress::new("bisect build");
        let built = source.build(
            &out,
            self.one_kernel().entry.as_ref(),
            self.cache,
            &mut progress,
        );
        drop(progress);
        drop(wt);
        let built = match built {
            Ok(b) => b,
            Err(f) => {
                if f.interrupted {
                    return Err(fail(Failure::Interrupted, "interrupted during a build"));
                }
                let mut why = format!(
                    "did not build: {}",
                    f.lines.first().cloned().unwrap_or_default()
                );
                why.push_str(&format!(" (log: {})", f.log.display()));
                return Ok(Err(why));
            }
        };
        let (path, object) = match &built.artifact {
            Artifact::Binary(p) => (p.clone(), false),
            Artifact::Object(p) => (p.clone(), true),
            Artifact::Nothing => anyhow::bail!("a build of {} made nothing to run", rev.line),
        };
        let file = path
            .file_name()
            .context("a built artifact has a name")?
            .to_string_lossy()
            .to_string();
        crate::kernel::cache::install_dir(entry, |staging| {
            std::fs::copy(&path, staging.join(&file))
                .with_context(|| format!("copying {}", path.display()))?;
            let meta = CachedBuild {
                file: file.clone(),
                object,
                version: built.version.clone(),
            };
            std::fs::write(
                staging.join("built.json"),
                serde_json::to_vec_pretty(&meta)?,
            )?;
            Ok(())
        })?;
        self.say(format!(
            "  {}: built in {:.1} s",
            rev.line,
            started.elapsed().as_secs_f64()
        ));
        Ok(Ok(self.cached(entry).context("the build just cached")?))
    }

    /// The session, booted the first time and again when it ended
    /// between runs (`runner::keep_serving`).
    fn ensure_vm(&mut self) -> Result<()> {
        let session = self
            .session
            .as_ref()
            .expect("a kernel to boot: the one kernel, or the step's (boot_step)");
        let ended =
            crate::runner::keep_serving(&mut self.live, &mut self.vms, &self.scenarios, session)?;
        if let Some(what) = ended {
            self.say(format!("  the VM ended ({what}); booting it again"));
        }
        Ok(())
    }

    /// One run of `built` on scenario `sc`, its result in `dir`.
    fn run_once(&mut self, built: &Built, sc: usize, dir: PathBuf) -> Result<CellResult> {
        self.ensure_vm()?;
        let planned = Planned {
            scenario: &self.scenarios[sc],
            scheduler: built,
            args: Vec::new(),
            swap_to: Vec::new(),
            recording: crate::agent::PassRecording::Off,
            dir,
        };
        let r = self.live.as_mut().expect("a session").run(&planned)?;
        self.results.push(r.clone());
        Ok(r)
    }

    /// Tests step `i` (the good end too, for the check criterion) and
    /// records it.
    fn test(&mut self, i: usize, what: &str) -> Result<Mark> {
        let rev = self.revs[i].clone();
        let started = Instant::now();
        let evidence = self.dir.join("steps").join(self.short(&rev));
        let candidate = match self.build(i)? {
            Ok(b) => b,
            Err(why) => {
                self.record(
                    i,
                    Mark::Skip,
                    vec![(
                        String::new(),
                        Judgement {
                            mark: Mark::Skip,
                            why,
                            shifts: Vec::new(),
                        },
                    )],
                    0,
                    0,
                    started,
                    evidence,
                );
                return Ok(Mark::Skip);
            }
        };
        // The good end's build (search() built it first: it is there).
        let good = match self.criterion.needs_good_runs() {
            true => Some(
                self.build(0)?
                    .map_err(|why| anyhow::anyhow!("the good end {} {why}", self.revs[0].line))?,
            ),
            false => None,
        };
        let n_sc = self.scenarios.len();
        let mut cand_runs: Vec<Vec<CellResult>> = vec![Vec::new(); n_sc];
        let mut good_runs: Vec<Vec<CellResult>> = vec![Vec::new(); n_sc];
        let (mut mark, mut why);
        loop {
            let done = cand_runs[0].len();
            let round = match (self.args.runs, &good) {
                (Runs::Fixed(n), _) => n,
                (Runs::Auto, None) => 1,
                (Runs::Auto, Some(_)) => AUTO_ROUND
                    .min(self.args.max_runs.saturating_sub(done))
                    .max(1),
            };
            // Beside the good end: compare's ABBA order (side 0 the good
            // end, 1 the candidate); alone, the candidate's runs.
            let order: Vec<(usize, usize, usize)> = match good {
                Some(_) => super::compare::round_order(done, round, n_sc),
                None => (done..done + round)
                    .flat_map(|run| (0..n_sc).map(move |sc| (1, sc, run)))
                    .collect(),
            };
            for (side, sc, run) in order {
                if crate::process::interrupted() {
                    return Err(fail(Failure::Interrupted, "interrupted"));
                }
                let name = &self.scenarios[sc].scenario.name;
                let at = evidence
                    .join(if side == 0 { "good" } else { "candidate" })
                    .join(name)
                    .join(format!("{:03}", run + 1));
                // On the kernel axis a side is a kernel: each change of
                // side in the ABBA order boots the other one's VM, so both
                // sides' runs see as many fresh boots.
                if matches!(self.axis, Axis::Kernel(_)) {
                    self.boot_step(if side == 0 && good.is_some() { 0 } else { i });
                }
                let built = match (side, &good) {
                    (0, Some(g)) => g,
                    _ => &candidate,
                };
                let r = self.run_once(built, sc, at)?;
                if side == 0 {
                    good_runs[sc].push(r);
                } else {
                    cand_runs[sc].push(r);
                }
            }
            // A run cut short by an interrupt is no verdict on the commit.
            if crate::process::interrupted() {
                return Err(fail(Failure::Interrupted, "interrupted"));
            }
            why = Vec::new();
            let mut missing = Vec::new();
            for sc in 0..n_sc {
                let g: Vec<&CellResult> = good_runs[sc].iter().collect();
                let c: Vec<&CellResult> = cand_runs[sc].iter().collect();
                let name = &self.scenarios[sc].scenario.name;
                // Between the ends: what moved between them.
                let ends = (i != self.revs.len() - 1)
                    .then(|| self.ends.get(name).map_or(&[][..], Vec::as_slice));
                match judge(
                    &self.criterion,
                    &g,
                    &c,
                    self.args.stats.alpha,
                    self.args.stats.noise,
                    ends,
                ) {
                    Ok(j) => why.push((name.clone(), j)),
                    // A metric one scenario lacks is judged on the others.
                    Err(e) => missing.push(e),
                }
            }
            if why.is_empty() {
                return Err(fail(
                    Failure::BadInput,
                    missing.first().cloned().unwrap_or_default(),
                ));
            }
            mark = combine(why.iter().map(|(_, j)| j.mark));
            let more = mark == Mark::Undecided
                && self.args.runs == Runs::Auto
                && good.is_some()
                && cand_runs[0].len() < self.args.max_runs;
            if !more {
                break;
            }
            self.say(format!(
                "  {}: not settled after {} run(s) per side; more",
                rev.line,
                cand_runs[0].len(),
            ));
        }
        if i == self.revs.len() - 1 {
            self.ends = why
                .iter()
                .map(|(sc, j)| (sc.clone(), j.shifts.clone()))
                .collect();
        }
        let runs = cand_runs.iter().map(Vec::len).sum();
        let good_n = good_runs.iter().map(Vec::len).sum();
        let rec = self.record(i, mark, why, runs, good_n, started, evidence);
        self.say(format!(
            "{what} {}: {}  [{} run(s){}, {:.0} s]\n{}",
            rev.line,
            label(mark),
            rec.runs,
            if rec.good_runs > 0 {
                format!(" + {} of the good end", rec.good_runs)
            } else {
                String::new()
            },
            rec.seconds,
            rec.why
                .iter()
                .map(|(sc, j)| format!("  {sc}: {}", j.why))
                .collect::<Vec<_>>()
                .join("\n")
        ));
        Ok(mark)
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        i: usize,
        mark: Mark,
        why: Vec<(String, Judgement)>,
        runs: usize,
        good_runs: usize,
        started: Instant,
        evidence: PathBuf,
    ) -> StepRecord {
        let rec = StepRecord {
            step: i,
            rev: self.revs[i].clone(),
            mark,
            why,
            runs,
            good_runs,
            seconds: started.elapsed().as_secs_f64(),
            evidence,
        };
        if mark == Mark::Skip {
            self.say(format!(
                "skip {}: {}",
                rec.rev.line,
                rec.why.first().map_or("", |(_, j)| j.why.as_str())
            ));
        }
        self.steps.push(rec.clone());
        rec
    }

    fn step_of(&self, i: usize) -> Option<&StepRecord> {
        self.steps.iter().rev().find(|s| s.step == i)
    }
}

fn label(m: Mark) -> &'static str {
    match m {
        Mark::Good => "good",
        Mark::Bad => "BAD",
        Mark::Skip => "skipped",
        Mark::Undecided => "cannot decide",
    }
}

pub fn run(args: BisectArgs) -> Result<i32> {
    let started = Instant::now();
    args.target.check()?;
    args.stats.check()?;
    if args.target.no_build {
        return Err(fail(
            Failure::BadInput,
            "bisect builds every commit it tests; --no-build does not apply\n  fix: drop --no-build",
        ));
    }
    let criterion = match (args.bad_if, &args.metric) {
        (BadIf::Checks, Some(_)) => {
            return Err(fail(
                Failure::BadInput,
                "--metric decides only with --bad-if worse\n  fix: add --bad-if worse, or drop --metric",
            ))
        }
        (BadIf::Checks, None) => Criterion::Checks,
        (BadIf::Worse, m) => Criterion::Worse(m.clone()),
    };
    if args.bad_if == BadIf::Worse {
        if args.runs == Runs::Auto && args.max_runs < AUTO_ROUND {
            return Err(fail(
                Failure::BadInput,
                format!("--max-runs {}: a round of --runs auto is {AUTO_ROUND} runs per side\n  fix: --max-runs {AUTO_ROUND} or more", args.max_runs),
            ));
        }
        if let Runs::Fixed(n) = args.runs {
            if n < AUTO_ROUND {
                return Err(fail(
                    Failure::BadInput,
                    format!("--runs {n}: with fewer than {AUTO_ROUND} runs per side the Mann-Whitney test cannot reach p < 0.05 (3 against 3: at best 0.1), so nothing could be called worse\n  fix: --runs {AUTO_ROUND} or more, or --runs auto"),
                ));
            }
        }
    }
    if args.kernel_tree.is_some() {
        let refuse = |why: &str| Err(fail(Failure::BadInput, why.to_string()));
        if args.target.target == super::TargetKind::Host {
            return refuse("--kernel-tree boots each step's kernel in a VM; the host target runs on the kernel it has\n  fix: drop --target host");
        }
        if args.vm.kernel_arg()?.is_some() {
            return refuse("--kernel-tree builds each step's kernel; --kernel would name another\n  fix: drop --kernel");
        }
    }
    let registry = args.registry.load()?;
    let scenarios = super::one_vm_scenarios(&args.scenarios, "bisect")?;
    // A git axis: the scheduler's tree, or a kernel's.
    let commits = |t: &Path, flag: &str, what: &str| -> Result<(PathBuf, Rev, Vec<Rev>)> {
        let tree = std::fs::canonicalize(t).map_err(|e| {
            fail(
                Failure::BadInput,
                format!("{flag} {}: {e}\n  fix: name {what}", t.display()),
            )
        })?;
        let good = git::resolve(&tree, &args.good, "--good")?;
        let bad = git::resolve(&tree, &args.bad, "--bad")?;
        let between = git::between(&tree, &good, &bad)?;
        Ok((tree, good, between))
    };
    let (axis, good, between) = match (&args.tree, &args.kernel_tree) {
        (Some(t), _) => {
            let (tree, good, between) = commits(t, "--tree", "the scheduler's git repository")?;
            (Axis::Tree(tree), good, between)
        }
        (None, Some(t)) => {
            let (tree, good, between) =
                commits(t, "--kernel-tree", "a Linux kernel's git repository")?;
            (Axis::Kernel(tree), good, between)
        }
        (None, None) => {
            let name = crate_of(&registry, &args.scheduler)?;
            let published = crate::bisect::crates::fetch(&name)?;
            let (good, between) =
                crate::bisect::crates::between(&name, &published, &args.good, &args.bad)?;
            (Axis::Crate(name), good, between)
        }
    };
    let mut revs = vec![good];
    revs.extend(between);
    let n = revs.len() - 1;
    let (good, bad) = (revs[0].clone(), revs[n].clone());
    let cache = Cache::user();
    // On the kernel axis each step brings its own (built in the search).
    let kernel = match &axis {
        Axis::Kernel(_) => None,
        _ => Some(args.target.kernel(&args.vm)?),
    };
    let registry = registry.for_kernel(kernel.as_ref().and_then(Kernel::name));
    let def = registry.get(&args.scheduler).ok();
    let step_kernels: Vec<std::cell::OnceCell<Kernel>> =
        (0..=n).map(|_| std::cell::OnceCell::new()).collect();
    let serving = super::Serving::start(
        "bisect",
        &args.target,
        &scenarios,
        args.out.clone(),
        args.record.as_deref(),
    )?;
    let dir = serving.dir.clone();
    let session = kernel.as_ref().map(|k| serving.session(k, args.vm.accel));
    let mut b = Bisect {
        args: &args,
        criterion: criterion.clone(),
        axis,
        revs,
        def,
        kernel: kernel.as_ref(),
        cache: &cache,
        registry: &registry,
        scenarios,
        dir: dir.clone(),
        serving: &serving,
        session,
        live: None,
        vms: 0,
        step_kernels: &step_kernels,
        kernel_worktree: None,
        vm_step: None,
        builds: HashMap::new(),
        results: Vec::new(),
        ends: HashMap::new(),
        steps: Vec::new(),
    };
    let searched_in = match &b.axis {
        Axis::Tree(tree) => format!("in {}", tree.display()),
        Axis::Crate(name) => format!("over {name}'s versions on crates.io"),
        Axis::Kernel(tree) => format!("over the kernels of {}", tree.display()),
    };
    b.say(format!(
        "bisect {} {searched_in}: {n} {}(s) after {} up to {}; bad if {}; results in {}",
        args.scheduler,
        b.unit(),
        good.line,
        bad.line,
        describe(&criterion),
        dir.display()
    ));
    let searched = search(&mut b, n);
    if let Some(live) = b.live.take() {
        let _ = live.finish();
    }
    // An error (an interrupt, the VM, a metric that is not there) stops
    // the search, and what ran so far is still written.
    let (searched, error) = match searched {
        Ok(s) => (s, None),
        Err(e) => (("stopped", format!("{e:#}"), None, None), Some(e)),
    };
    let (result, message, first_bad, range) = searched;
    let seconds = started.elapsed().as_secs_f64();
    let tested = b
        .steps
        .iter()
        .filter(|s| s.step != 0 && s.step != n)
        .count();
    let runs: usize = b.steps.iter().map(|s| s.runs + s.good_runs).sum();
    if error.is_none() {
        b.say(format!(
            "{message}\n{tested} step(s) between the ends tested ({} for a binary search over {n} {}(s)), {runs} run(s), {:.0} s",
            (n as f64).log2().ceil(),
            b.unit(),
            seconds
        ));
    }
    let revs = b.revs.clone();
    let (tree, krate, kernel_tree) = match &b.axis {
        Axis::Tree(t) => (Some(t.clone()), None, None),
        Axis::Crate(c) => (None, Some(c.clone()), None),
        Axis::Kernel(t) => (None, None, Some(t.clone())),
    };
    let outcome = Outcome {
        scheduler: &args.scheduler,
        tree: tree.as_deref(),
        krate: krate.as_deref(),
        kernel_tree: kernel_tree.as_deref(),
        good: &revs[0],
        bad: &revs[n],
        criterion: describe(&criterion),
        result,
        first_bad: first_bad.map(|i| &revs[i]),
        range: range.map_or_else(Vec::new, |(lo, hi)| revs[lo + 1..=hi].iter().collect()),
        message,
        steps: &b.steps,
        seconds,
    };
    crate::kernel::cache::write_atomic(
        &dir.join("bisect.json"),
        &serde_json::to_vec_pretty(&outcome)?,
    )?;
    let results = std::mem::take(&mut b.results);
    drop(b);
    let html = serving.rundir.finish(&results)?;
    if let Some(e) = error {
        eprintln!(
            "bisect: stopped; the steps so far are in {}",
            dir.join("bisect.json").display()
        );
        return Err(e);
    }
    println!(
        "bisect: {}\nreport: {}",
        dir.join("bisect.json").display(),
        html.display()
    );
    if let Some(db) = &args.record {
        if !results.is_empty() {
            let id = super::history::record_or_explain(db, &dir, &results)?;
            println!("recorded as run {id} in {}", db.display());
        }
    }
    if let Some(h) = &serving.host {
        h.check_left_nothing()?;
    }
    Ok(if result == "found" { 0 } else { 1 })
}

/// Why a kernel or scheduler did not build, in a line: the error's first
/// line, its first indented line (the tool's own first error) and the
/// log's path when it names one.
fn build_failure(e: &anyhow::Error) -> String {
    let text = format!("{e:#}");
    let mut lines = text.lines();
    let mut out = lines.next().unwrap_or("").trim().to_string();
    let rest: Vec<&str> = lines.map(str::trim).collect();
    if let Some(first) = rest
        .iter()
        .find(|l| !l.is_empty() && !l.starts_with("full log:"))
    {
        out.push_str(&format!(" {first}"));
    }
    if let Some(log) = rest.iter().find(|l| l.starts_with("full log:")) {
        out.push_str(&format!(" ({log})"));
    }
    out
}

/// Whether a failed `cargo install` failed in the compiler (the
/// version's code or its locked dependencies do not build with this
/// toolchain), not in fetching or writing.
fn compile_failure(error: &str) -> bool {
    error.contains("could not compile") || error.contains("error[E")
}

/// Why a version did not install, in a line: the compiler's first error
/// (cargo's own last, "failed to compile", says less) and the log.
fn install_failure(error: &str) -> String {
    let first = error.lines().next().unwrap_or("").trim();
    let cause = error
        .lines()
        .skip(1)
        .map(str::trim)
        .find(|l| l.starts_with("error"))
        .unwrap_or(first);
    match error
        .lines()
        .find_map(|l| l.trim().strip_prefix("full log: "))
    {
        Some(log) => format!("did not build: {cause} (log: {log})"),
        None => format!("did not build: {cause}"),
    }
}

/// The crate whose versions `scheduler` names: its registry entry's
/// `crate` source, else a crate of that name.
fn crate_of(registry: &crate::scheduler::registry::Registry, scheduler: &str) -> Result<String> {
    use crate::scheduler::registry::Source;
    match registry.get(scheduler).ok().and_then(|d| d.source.as_ref()) {
        Some(Source::Crate(c)) => Ok(c.name.clone()),
        Some(_) => Err(fail(
            Failure::BadInput,
            format!(
                "{scheduler} is not a crates.io scheduler in {} (its source is not `crate`), so it has no published versions to search\n  fix: bisect its git tree with --tree DIR",
                registry.path.display()
            ),
        )),
        None => Ok(scheduler.to_string()),
    }
}

fn describe(c: &Criterion) -> String {
    match c {
        Criterion::Checks => "a check fails".into(),
        Criterion::Worse(None) => "any key metric is worse than at the good end".into(),
        Criterion::Worse(Some(m)) => format!("{m} is worse than at the good end"),
    }
}

type Searched = (&'static str, String, Option<usize>, Option<(usize, usize)>);

/// Verifies the ends, then searches. The result kind, the message, the
/// first bad step (found) or the range of steps that holds the change.
fn search(b: &mut Bisect, n: usize) -> Result<Searched> {
    let line = |b: &Bisect, i: usize| b.revs[i].line.clone();
    // With a metric the good end is never a step of its own: its runs
    // are beside each step's (steps/COMMIT/good/).
    let evidence = |b: &Bisect, i: usize| {
        b.step_of(i).map_or_else(
            || {
                format!(
                    "beside each step's, {}",
                    b.dir.join("steps/*/good").display()
                )
            },
            |s| s.evidence.display().to_string(),
        )
    };
    // The ends first: a search between ends that are not as stated would
    // name a commit for nothing.
    if let Err(why) = b.build(0)? {
        return Ok((
            "ends",
            format!(
                "the good end {} {why}; nothing was searched\n  fix: name a good {} that builds",
                line(b, 0),
                b.unit()
            ),
            None,
            None,
        ));
    }
    if b.criterion == Criterion::Checks {
        match b.test(0, "good end")? {
            Mark::Good => {}
            Mark::Bad => {
                return Ok((
                    "ends",
                    format!(
                        "the good end {} is in fact bad (a check fails there too); nothing was searched\n  evidence: {}\n  fix: name an earlier --good",
                        line(b, 0),
                        evidence(b, 0)
                    ),
                    None,
                    None,
                ))
            }
            _ => {
                return Ok((
                    "ends",
                    format!(
                        "the good end {} could not be tested ({}); nothing was searched",
                        line(b, 0),
                        b.step_of(0).and_then(|s| s.why.first()).map_or("", |(_, j)| j.why.as_str())
                    ),
                    None,
                    None,
                ))
            }
        }
    }
    match b.test(n, "bad end")? {
        Mark::Bad => {}
        m => {
            let what = match (m, &b.criterion) {
                (Mark::Good, Criterion::Checks) => "is not bad: every check passes there",
                (Mark::Good, _) => "is no worse than the good end",
                (Mark::Skip, _) => "could not be tested",
                _ => "cannot be told from the good end: its verdict did not settle within --max-runs (a change about the size of --noise, or runs that disagree)",
            };
            return Ok((
                "ends",
                format!(
                    "the bad end {} {what}; nothing was searched\n  why: {}\n  evidence: {}",
                    line(b, n),
                    b.step_of(n)
                        .map(|s| {
                            s.why
                                .iter()
                                .map(|(sc, j)| format!("{sc}: {}", j.why))
                                .collect::<Vec<_>>()
                                .join("; ")
                        })
                        .unwrap_or_default(),
                    evidence(b, n)
                ),
                None,
                None,
            ));
        }
    }
    let mut s = Search::new(n);
    let mut k = 0;
    loop {
        match s.next() {
            Next::Test(i) => {
                k += 1;
                let m = b.test(i, &format!("step {k}"))?;
                s.mark(i, m);
            }
            Next::Found(i) => {
                let last_good = (0..i)
                    .rev()
                    .find(|j| b.step_of(*j).is_some_and(|s| s.mark == Mark::Good))
                    .unwrap_or(0);
                return Ok((
                    "found",
                    format!(
                        "first bad {}: {}\n  {}\n  its evidence: {}\n  last good: {}, evidence: {}",
                        b.unit(),
                        b.revs[i].id,
                        line(b, i),
                        evidence(b, i),
                        line(b, last_good),
                        evidence(b, last_good)
                    ),
                    Some(i),
                    None,
                ));
            }
            Next::Range { good, bad } => {
                let list: Vec<String> = (good + 1..=bad)
                    .map(|j| format!("  {}", line(b, j)))
                    .collect();
                return Ok((
                    "range",
                    format!(
                        "the first bad {} is one of these (the ones before {} were skipped):\n{}",
                        b.unit(),
                        line(b, bad),
                        list.join("\n")
                    ),
                    None,
                    Some((good, bad)),
                ));
            }
            Next::Undecided { at, good, bad } => {
                let list: Vec<String> = (good + 1..=bad)
                    .map(|j| format!("  {}", line(b, j)))
                    .collect();
                return Ok((
                    "undecided",
                    format!(
                        "cannot decide at {}: {}\nthe change lies in these {}s (after {}, good):\n{}\n  fix: more runs (--max-runs), a metric that moves more (--metric), or a quieter machine",
                        line(b, at),
                        b.step_of(at).and_then(|s| s.why.iter().find(|(_, j)| j.mark == Mark::Undecided)).map_or("", |(_, j)| j.why.as_str()),
                        b.unit(),
                        line(b, good),
                        list.join("\n")
                    ),
                    None,
                    Some((good, bad)),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_that_did_not_install_is_told_by_the_compilers_first_error() {
        let e = "cargo install scx_lavd 1.0.5 failed (exit status: 101):\n  \
                 error[E0521]: borrowed data escapes outside of associated function\n  \
                 error: could not compile `metrics` (lib) due to 1 previous error\n  \
                 full log: /c/logs/crate-scx_lavd-1.0.5.log";
        assert_eq!(
            install_failure(e),
            "did not build: error[E0521]: borrowed data escapes outside of associated function (log: /c/logs/crate-scx_lavd-1.0.5.log)"
        );
        assert_eq!(install_failure("no network"), "did not build: no network");
        assert!(compile_failure(e));
        assert!(!compile_failure(
            "cargo install x 1.0.0 failed (exit status: 101):\n  error: failed to download `libbpf-rs v0.24.8`"
        ));
    }
}
