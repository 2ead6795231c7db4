//! `brainpipe`: run, plan and inspect fMRI decoding pipelines; run one stage alone; check the
//! LibTorch runtime.

mod slurm_cli;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow, bail};
use brainpipe_core::{
    Catalogue, ContentHash, DynStage, RemoteStage, WORKER_PROTOCOL, disk_size, list_input_key,
    run_standalone, split_input_key, write_file_atomic,
};
use brainpipe_pipeline::{
    Cache, Executor, ExecutorKind, InputSource, Pipeline, Reason, Registry, RunOptions, gc, plan,
    run_on,
};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{Map, Value, json};

#[derive(Parser)]
#[command(
    name = "brainpipe",
    version,
    about = "Decode fMRI into meaning: staged, cached, reproducible pipelines."
)]
struct Cli {
    /// More logging (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline: every stage whose inputs, params or version changed, in parallel.
    Run {
        #[command(flatten)]
        target: PipelineArgs,
        /// Recompute this stage (and everything downstream) even if cached; repeatable.
        #[arg(long, value_name = "STAGE")]
        force: Vec<String>,
        /// Stages run at once (default: number of cores).
        #[arg(short, long)]
        jobs: Option<usize>,
        /// Where stages run: `local` or `slurm` (default: the pipeline's `executor:` block, else
        /// local). See docs/SLURM.md.
        #[arg(long, value_name = "KIND")]
        executor: Option<ExecutorKind>,
        /// With the slurm executor: submit every stage to compute at once, each job after its
        /// upstream jobs, and return; `brainpipe status` shows the jobs, a later `run` resumes.
        #[arg(long)]
        detach: bool,
    },
    /// Show, per stage, whether it is cached or will run, and why.
    Plan {
        #[command(flatten)]
        target: PipelineArgs,
        /// Plan as if these stages were forced.
        #[arg(long, value_name = "STAGE")]
        force: Vec<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print the stage graph (text, or Graphviz with --dot).
    Dag {
        #[command(flatten)]
        target: PipelineArgs,
        /// Graphviz dot output.
        #[arg(long)]
        dot: bool,
    },
    /// Show each stage's cache entry: when it ran, how long, how big.
    Status {
        #[command(flatten)]
        target: PipelineArgs,
    },
    /// Remove cache entries that none of the given pipelines references.
    Gc {
        /// Pipeline files whose entries to keep.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Cache directory (default: .brainpipe beside the first pipeline file).
        #[arg(long, env = "BRAINPIPE_CACHE")]
        cache: Option<PathBuf>,
        /// Only report what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Rehash cache entries and compare them with their manifests; damaged entries are moved
    /// to quarantine/ (recomputed by the next run) unless --keep. Exit status 1 if any is damaged.
    Verify {
        /// Pipeline files whose last-run entries to check (default: every entry in the cache).
        files: Vec<PathBuf>,
        /// Cache directory (default: .brainpipe beside the first pipeline file, or ./.brainpipe).
        #[arg(long, env = "BRAINPIPE_CACHE")]
        cache: Option<PathBuf>,
        /// Report damaged entries but leave them in place.
        #[arg(long)]
        keep: bool,
    },
    /// Run one stage alone, outside any pipeline and cache.
    Stage {
        /// Stage name, e.g. ingest.synthetic (see `brainpipe stages`).
        name: String,
        /// An input, as port=path; repeatable.
        #[arg(long = "in", value_name = "PORT=PATH")]
        inputs: Vec<String>,
        /// A param, as key=value (YAML scalar; dotted keys for nested params); repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        params: Vec<String>,
        /// Output directory (must not exist, or be an earlier output of a stage).
        #[arg(long)]
        out: PathBuf,
    },
    /// List the stages: ports, params, defaults and docs.
    Stages {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Report the LibTorch runtime: version, CUDA, devices, cuDNN, threads, cache.
    Doctor {
        /// Cache directory to report on.
        #[arg(long, env = "BRAINPIPE_CACHE", default_value = ".brainpipe")]
        cache: PathBuf,
    },
    /// Compute one planned stage of a pipeline into its cache: what a Slurm job runs.
    #[command(hide = true)]
    StageJob(slurm_cli::StageJobArgs),
}

#[derive(Args)]
struct PipelineArgs {
    /// Pipeline YAML file.
    file: PathBuf,
    /// Override a param: stage.param=value (YAML scalar); repeatable.
    #[arg(long = "set", value_name = "STAGE.PARAM=VALUE")]
    overrides: Vec<String>,
    /// Cache directory (default: .brainpipe beside the pipeline file).
    #[arg(long, env = "BRAINPIPE_CACHE")]
    cache: Option<PathBuf>,
}

impl PipelineArgs {
    fn load(&self, registry: &Registry) -> Result<(Pipeline, Cache)> {
        let pipeline = Pipeline::load(&self.file, registry, &self.overrides)?;
        let cache = Cache::open(&cache_dir(self.cache.as_deref(), &pipeline.file))?;
        Ok((pipeline, cache))
    }
}

fn cache_dir(explicit: Option<&Path>, pipeline_file: &Path) -> PathBuf {
    match explicit {
        Some(dir) => dir.to_path_buf(),
        None => pipeline_file.parent().unwrap_or(Path::new(".")).join(".brainpipe"),
    }
}

/// Every stage the CLI and pipelines can `use` — the LibTorch-free ones in this process, the
/// LibTorch ones through the `brainpipe-torch` worker's catalogue — and the tool versions that
/// manifests record. The catalogue is read once, here.
struct Stages {
    registry: Registry,
    tools: BTreeMap<String, String>,
}

/// Loads [`Stages`]; each worker stage will run with `worker_threads` CPU threads (0: LibTorch's
/// default), the cores shared by the stages that run at once.
fn stages(worker_threads: usize) -> Stages {
    let mut registry = Registry::new();
    let local: Vec<Arc<dyn DynStage>> = [
        brainpipe_ingest::stages(),
        brainpipe_features::stages(),
        brainpipe_targets::stages(),
        brainpipe_eval::stages(),
    ]
    .into_iter()
    .flatten()
    .collect();
    for stage in local {
        registry.register(stage);
    }
    let mut tools =
        BTreeMap::from([("brainpipe".to_owned(), env!("CARGO_PKG_VERSION").to_owned())]);
    match worker() {
        Ok(Some((path, catalogue))) => {
            tools.extend(catalogue.tools.into_iter().filter(|(k, _)| k != "brainpipe"));
            for info in catalogue.stages {
                if registry.get(&info.name).is_none() {
                    let declared = brainpipe_params::canonical(&info.name);
                    let mut stage = RemoteStage::with_threads(info, &path, worker_threads);
                    if let Some(canonical) = declared {
                        stage = stage.with_declared_params(canonical);
                    }
                    registry.register(Arc::new(stage));
                }
            }
        }
        Ok(None) => registry.set_unknown_hint(
            "brainpipe-torch was not found beside brainpipe (or in BRAINPIPE_TORCH), so LibTorch stages are unavailable",
        ),
        Err(err) => registry.set_unknown_hint(&format!("LibTorch stages unavailable: {err:#}")),
    }
    Stages { registry, tools }
}

fn registry() -> Registry {
    stages(0).registry
}

/// The worker executable: `BRAINPIPE_TORCH`, else `brainpipe-torch` beside this executable.
fn worker_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("BRAINPIPE_TORCH") {
        return Some(PathBuf::from(path));
    }
    let beside = std::env::current_exe().ok()?.parent()?.join("brainpipe-torch");
    beside.is_file().then_some(beside)
}

/// The worker and its catalogue. Asking the worker costs a LibTorch start, so the answer is kept
/// under ~/.cache/brainpipe/catalogue, keyed by the worker file's identity (path, size, mtime).
fn worker() -> Result<Option<(PathBuf, Catalogue)>> {
    use std::os::unix::fs::MetadataExt;
    let Some(path) = worker_path() else { return Ok(None) };
    let meta = std::fs::metadata(&path).with_context(|| format!("{}", path.display()))?;
    let identity = format!(
        "{}:{}:{}:{}:{}",
        path.display(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ino()
    );
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    let cached = base
        .join("brainpipe/catalogue")
        .join(format!("{}.json", ContentHash::of_bytes(identity.as_bytes()).short()));
    if let Some(catalogue) =
        std::fs::read(&cached).ok().and_then(|b| serde_json::from_slice::<Catalogue>(&b).ok())
    {
        return Ok(Some((path, catalogue)));
    }
    let output = std::process::Command::new(&path)
        .arg("catalogue")
        .output()
        .with_context(|| format!("cannot run {}", path.display()))?;
    if !output.status.success() {
        bail!(
            "{} catalogue failed: {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let catalogue: Catalogue = serde_json::from_slice(&output.stdout)
        .with_context(|| format!("{} catalogue: malformed JSON", path.display()))?;
    if catalogue.protocol != WORKER_PROTOCOL {
        bail!(
            "{} speaks protocol {}, this brainpipe speaks {WORKER_PROTOCOL}: rebuild both",
            path.display(),
            catalogue.protocol
        );
    }
    // A cache we cannot write only costs time.
    let _ = write_file_atomic(&cached, &output.stdout);
    Ok(Some((path, catalogue)))
}

fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.log_format);
    stop_children_on_signals();
    let result = dispatch(cli.command);
    if STOPPING.load(std::sync::atomic::Ordering::SeqCst) {
        // The run failed because a signal stopped its commands: the signal thread says so
        // and exits with the signal's status.
        loop {
            std::thread::park();
        }
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let mut chain: Vec<String> = err.chain().map(ToString::to_string).collect();
            // Errors that print their source (`path: source`) and also return it as `source()`
            // would say it twice.
            chain.dedup_by(|source, outer| outer.ends_with(source.as_str()));
            eprintln!("error: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}

/// Set once a signal has started stopping the run.
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The write end of the pipe the signal handler reports through (-1 until installed).
static SIGNAL_PIPE: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

extern "C" fn on_signal(signal: libc::c_int) {
    let fd = SIGNAL_PIPE.load(std::sync::atomic::Ordering::Relaxed);
    let byte = u8::try_from(signal).unwrap_or(0);
    // SAFETY: write(2) is async-signal-safe; the buffer is a local byte.
    unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
}

/// On SIGINT, SIGTERM or SIGHUP — sent to the driver's PID alone by a job scheduler, `timeout`
/// or a CI runner — end every running external command's process tree and remove the temporary
/// directories of unfinished stages, say so in one line, and exit 128 + the signal. (The
/// LibTorch worker dies with the driver by itself: PR_SET_PDEATHSIG.)
fn stop_children_on_signals() {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return;
    }
    SIGNAL_PIPE.store(fds[1], std::sync::atomic::Ordering::Relaxed);
    let read_end = fds[0];
    std::thread::spawn(move || {
        let mut byte = 0u8;
        // SAFETY: reads one byte into a local.
        while unsafe { libc::read(read_end, (&raw mut byte).cast(), 1) } != 1 {}
        let signal = libc::c_int::from(byte);
        STOPPING.store(true, std::sync::atomic::Ordering::SeqCst);
        let stopped = brainpipe_pipeline::shutdown();
        let name = match signal {
            libc::SIGINT => "SIGINT",
            libc::SIGTERM => "SIGTERM",
            _ => "SIGHUP",
        };
        let jobs = match stopped.jobs {
            0 => String::new(),
            n => format!("cancelled {n} Slurm job(s), "),
        };
        eprintln!(
            "interrupted by {name}: {jobs}ended {} running command(s) and removed {} unfinished stage director{}",
            stopped.commands,
            stopped.temp_dirs,
            if stopped.temp_dirs == 1 { "y" } else { "ies" }
        );
        std::process::exit(128 + signal);
    });
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only calls write(2) on a descriptor that stays open.
        unsafe {
            libc::signal(signal, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t)
        };
    }
}

/// `brainpipe plan … | head` should end quietly when `head` does, as Unix tools do, instead of
/// panicking on the closed pipe (Rust ignores SIGPIPE by default).
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: setting a signal disposition to its default touches no memory of ours and happens
    // before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn init_logging(verbose: u8, format: LogFormat) {
    // On a terminal the progress bar tells what runs; elsewhere (CI, files) log lines do.
    let quiet = std::io::stderr().is_terminal() && matches!(format, LogFormat::Text);
    let default = match verbose {
        0 if quiet => "warn",
        0 => "warn,brainpipe=info,brainpipe_pipeline=info",
        1 => "info,brainpipe=debug,brainpipe_pipeline=debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    match format {
        LogFormat::Text => builder.compact().without_time().init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Run { target, force, jobs, executor, detach } => {
            cmd_run(&target, force, jobs, executor, detach)
        }
        Command::Plan { target, force, json } => cmd_plan(&target, &force, json),
        Command::Dag { target, dot } => cmd_dag(&target, dot),
        Command::Status { target } => cmd_status(&target),
        Command::Gc { files, cache, dry_run } => cmd_gc(&files, cache.as_deref(), dry_run),
        Command::Verify { files, cache, keep } => {
            if cmd_verify(&files, cache.as_deref(), keep)? {
                Ok(())
            } else {
                bail!("damaged cache entries found (listed above)")
            }
        }
        Command::Stage { name, inputs, params, out } => cmd_stage(&name, &inputs, &params, &out),
        Command::Stages { json } => cmd_stages(json),
        Command::Doctor { cache } => cmd_doctor(&cache),
        Command::StageJob(args) => slurm_cli::cmd_stage_job(&args),
    }
}

fn cmd_run(
    target: &PipelineArgs,
    force: Vec<String>,
    jobs: Option<usize>,
    executor: Option<ExecutorKind>,
    detach: bool,
) -> Result<()> {
    let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    let jobs = jobs.unwrap_or(cores).max(1);
    let Stages { registry, tools } = stages((cores / jobs).max(1));
    let (pipeline, cache) = target.load(&registry)?;
    let mut options = RunOptions {
        force,
        progress: std::io::stderr().is_terminal(),
        tools,
        ..RunOptions::default()
    };
    options.jobs = jobs;
    let program = std::env::current_exe().context("the brainpipe executable, for Slurm jobs")?;
    let executor = Executor::choose(executor, &pipeline, program, &target.overrides);
    if detach {
        return slurm_cli::run_detached(&pipeline, &cache, &options, &executor);
    }
    let outcomes = run_on(&pipeline, &cache, &options, &executor)?;
    let width = outcomes.iter().map(|o| o.id.len()).max().unwrap_or(5);
    let stage_width = outcomes.iter().map(|o| o.manifest.stage.len()).max().unwrap_or(5);
    for outcome in &outcomes {
        let m = &outcome.manifest;
        let state = if outcome.cached { "cached" } else { "ran" };
        let key = &m.key[..12.min(m.key.len())];
        println!(
            "{:<width$}  {:<stage_width$}  {:<6} {:>8.2}s  {key}",
            outcome.id,
            m.stage,
            state,
            m.seconds()
        );
    }
    let runs = cache.runs_dir(&pipeline.name);
    println!("outputs: {}", runs.display());
    Ok(())
}

fn cmd_plan(target: &PipelineArgs, force: &[String], as_json: bool) -> Result<()> {
    let (pipeline, cache) = target.load(&registry())?;
    let plans = plan(&pipeline, &cache, force)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&plans)?);
        return Ok(());
    }
    let to_run = plans.iter().filter(|p| !p.cached).count();
    println!(
        "pipeline {} — {} stages, {} cached, {} to run (cache {})",
        pipeline.name,
        plans.len(),
        plans.len() - to_run,
        to_run,
        cache.root().display()
    );
    let width = plans.iter().map(|p| p.id.len()).max().unwrap_or(5);
    let stage_width = plans.iter().map(|p| p.stage.len()).max().unwrap_or(5);
    for p in &plans {
        let key = p.key.as_ref().map(|k| k.short().to_owned()).unwrap_or_else(|| "-".repeat(12));
        let (state, why) = if p.cached {
            ("cached", String::new())
        } else {
            ("run", p.reasons.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
        };
        println!("  {:<width$}  {:<stage_width$}  {:<6} {key}  {why}", p.id, p.stage, state);
    }
    Ok(())
}

fn cmd_dag(target: &PipelineArgs, dot: bool) -> Result<()> {
    let (pipeline, _) = target.load(&registry())?;
    if dot {
        println!(
            "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, fontname=\"Helvetica\"];",
            pipeline.name
        );
        for node in &pipeline.nodes {
            println!("  \"{}\" [label=\"{}\\n{}\"];", node.id, node.id, node.stage_name());
            for (port, source) in &node.inputs {
                match source {
                    InputSource::Stage { stage, port: out } => {
                        println!("  \"{stage}\" -> \"{}\" [label=\"{out} → {port}\"];", node.id);
                    }
                    InputSource::File(path) => {
                        let name = path.display().to_string();
                        println!(
                            "  \"{name}\" [shape=note];\n  \"{name}\" -> \"{}\" [label=\"{port}\"];",
                            node.id
                        );
                    }
                }
            }
        }
        println!("}}");
        return Ok(());
    }
    for node in &pipeline.nodes {
        let inputs: Vec<String> =
            node.inputs.iter().map(|(port, s)| format!("{port} ← {}", s.describe())).collect();
        let outputs: Vec<String> = node.outputs().into_iter().map(|(p, _)| p).collect();
        println!("{} ({})", node.id, node.stage_name());
        if !inputs.is_empty() {
            println!("    in:  {}", inputs.join(", "));
        }
        println!("    out: {}", outputs.join(", "));
    }
    Ok(())
}

fn cmd_status(target: &PipelineArgs) -> Result<()> {
    let (pipeline, cache) = target.load(&registry())?;
    let plans = plan(&pipeline, &cache, &[])?;
    let width = plans.iter().map(|p| p.id.len()).max().unwrap_or(5);
    let stage_width = plans.iter().map(|p| p.stage.len()).max().unwrap_or(5);
    for p in &plans {
        let entry = p.key.as_ref().filter(|_| p.cached).and_then(|k| cache.entry(k));
        match (entry, &p.key) {
            (Some(m), Some(key)) => {
                let bytes = disk_size(&cache.entry_dir(key));
                println!(
                    "{:<width$}  {:<stage_width$}  cached   {}  {}  {:>8.2}s  {:>10}  {}",
                    p.id,
                    p.stage,
                    key.short(),
                    m.finished,
                    m.seconds(),
                    human_bytes(bytes),
                    m.device
                );
            }
            _ => {
                let state = match p.reasons.iter().find_map(|r| match r {
                    Reason::EntryDamaged { detail } => Some(detail),
                    _ => None,
                }) {
                    Some(detail) => format!("damaged  {detail}"),
                    None => "missing".to_owned(),
                };
                println!("{:<width$}  {:<stage_width$}  {state}", p.id, p.stage);
            }
        }
    }
    slurm_cli::print_detached_jobs(&pipeline, &cache)?;
    Ok(())
}

fn cmd_gc(files: &[PathBuf], cache: Option<&Path>, dry_run: bool) -> Result<()> {
    let registry = registry();
    let pipelines =
        files.iter().map(|f| Pipeline::load(f, &registry, &[])).collect::<Result<Vec<_>, _>>()?;
    let cache = Cache::open(&cache_dir(cache, &pipelines[0].file))?;
    let report = gc(&pipelines, &cache, dry_run)?;
    let verb = if dry_run { "would remove" } else { "removed" };
    println!(
        "{verb} {} entries and {} leftover temp dirs, {}",
        report.entries.len(),
        report.temp_dirs.len(),
        human_bytes(report.bytes)
    );
    for key in &report.entries {
        println!("  {key}");
    }
    if !report.other_hosts.is_empty() {
        println!(
            "kept {} temp dirs of other hosts (runs there may be alive; remove them when none is)",
            report.other_hosts.len()
        );
        for dir in &report.other_hosts {
            println!("  {}", dir.display());
        }
    }
    if !report.shard_areas.is_empty() {
        println!(
            "kept {} shard folders of stages not merged yet (their Slurm jobs may run; remove them when none does)",
            report.shard_areas.len()
        );
        for dir in &report.shard_areas {
            println!("  {}", dir.display());
        }
    }
    Ok(())
}

fn cmd_verify(files: &[PathBuf], cache: Option<&Path>, keep: bool) -> Result<bool> {
    let registry = registry();
    let pipelines =
        files.iter().map(|f| Pipeline::load(f, &registry, &[])).collect::<Result<Vec<_>, _>>()?;
    let root = match (cache, pipelines.first()) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, Some(p)) => cache_dir(None, &p.file),
        (None, None) => PathBuf::from(".brainpipe"),
    };
    if !root.join("entries").is_dir() {
        bail!("{}: not a brainpipe cache (no entries/)", root.display());
    }
    let cache = Cache::open(&root)?;
    let keys =
        (!pipelines.is_empty()).then(|| brainpipe_pipeline::pipeline_keys(&pipelines, &cache));
    let threads = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    let tty = std::io::stderr().is_terminal();
    let progress = |done: usize, total: usize| {
        if tty {
            eprint!("\rverifying {done}/{total}");
        }
    };
    let report = brainpipe_pipeline::verify(&cache, keys.as_ref(), keep, threads, &progress)?;
    if tty {
        eprintln!();
    }
    println!(
        "verified {} entries ({}): {} damaged",
        report.checked,
        human_bytes(report.bytes),
        report.damaged.len()
    );
    for d in &report.damaged {
        match &d.quarantined {
            Some(to) => println!("  {}  {}  -> {}", d.key.short(), d.detail, to.display()),
            None => println!("  {}  {}", d.key.short(), d.detail),
        }
    }
    Ok(report.damaged.is_empty())
}

fn cmd_stage(name: &str, inputs: &[String], params: &[String], out: &Path) -> Result<()> {
    let Stages { registry, tools } = stages(0);
    let stage = registry
        .get(name)
        .ok_or_else(|| anyhow!("unknown stage `{name}` (see `brainpipe stages`)"))?;
    let mut given: Vec<(&str, PathBuf)> = Vec::new();
    for item in inputs {
        let (port, path) =
            item.split_once('=').ok_or_else(|| anyhow!("--in {item}: expected port=path"))?;
        given.push((port, PathBuf::from(path)));
    }
    // A port given several times is a list input: its paths become `port#0`, `port#1`, … in
    // command-line order.
    let mut input_paths: BTreeMap<String, PathBuf> = BTreeMap::new();
    for &(port, ref path) in &given {
        let count = given.iter().filter(|(p, _)| *p == port).count();
        let key = if count > 1 {
            let index =
                input_paths.keys().filter(|k| split_input_key(k.as_str()).0 == port).count();
            list_input_key(port, index)
        } else {
            port.to_owned()
        };
        input_paths.insert(key, path.clone());
    }
    let mut values = Map::new();
    for item in params {
        let (key, value) =
            item.split_once('=').ok_or_else(|| anyhow!("--set {item}: expected key=value"))?;
        let value = brainpipe_pipeline::parse_value(value);
        insert_dotted(&mut values, key, value);
    }
    let manifest =
        run_standalone(stage.as_ref(), &input_paths, &Value::Object(values), out, &tools)
            .map_err(|e| anyhow!("stage `{name}`: {e}"))?;
    for (port, record) in &manifest.outputs {
        println!("{port:<12} {}  {}", out.join(&record.file).display(), human_bytes(record.bytes));
    }
    Ok(())
}

fn insert_dotted(map: &mut Map<String, Value>, key: &str, value: Value) {
    match key.split_once('.') {
        None => {
            map.insert(key.to_owned(), value);
        }
        Some((head, rest)) => {
            let slot = map.entry(head.to_owned()).or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            if let Value::Object(inner) = slot {
                insert_dotted(inner, rest, value);
            }
        }
    }
}

fn cmd_stages(as_json: bool) -> Result<()> {
    let registry = registry();
    let described: Vec<Value> = registry
        .iter()
        .map(|s| {
            json!({
                "name": s.name(),
                "version": s.version(),
                "summary": s.summary(),
                "inputs": s.inputs(),
                "outputs": s.outputs(),
                "params": s.param_docs(),
            })
        })
        .collect();
    if as_json {
        println!("{}", serde_json::to_string_pretty(&described)?);
        return Ok(());
    }
    if described.is_empty() {
        println!("no built-in stages registered");
    }
    for stage in registry.iter() {
        println!("{} (v{}) — {}", stage.name(), stage.version(), stage.summary());
        for port in stage.inputs() {
            let optional = if port.required { "" } else { " (optional)" };
            let many = if port.many { " (many: a list)" } else { "" };
            println!("  in  {:<14} {}{optional}{many}", port.name, port.doc);
        }
        for port in stage.outputs() {
            println!("  out {:<14} {} — {}", port.name, port.file, port.doc);
        }
        for param in stage.param_docs() {
            println!("  --set {}={}  ({}) {}", param.name, param.default, param.ty, param.doc);
        }
        println!();
    }
    Ok(())
}

fn cmd_doctor(cache: &Path) -> Result<()> {
    println!("brainpipe      {}", env!("CARGO_PKG_VERSION"));
    let size =
        if cache.exists() { human_bytes(disk_size(cache)) } else { "(not created yet)".to_owned() };
    let cache = std::path::absolute(cache).unwrap_or_else(|_| cache.to_path_buf());
    slurm_cli::print_slurm_report();
    let Some(worker) = worker_path() else {
        println!("cache          {}  {size}", cache.display());
        bail!(
            "brainpipe-torch not found beside brainpipe (or in BRAINPIPE_TORCH): build it with `make build`"
        );
    };
    let output = std::process::Command::new(&worker)
        .arg("doctor")
        .output()
        .with_context(|| format!("cannot run {}", worker.display()))?;
    if !output.status.success() {
        bail!(
            "{} doctor failed: {}",
            worker.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let info: Value =
        serde_json::from_slice(&output.stdout).context("brainpipe-torch doctor: malformed JSON")?;
    let yes_no =
        |key: &str| if info[key].as_bool() == Some(true) { "available" } else { "not available" };
    println!("worker         {}", worker.display());
    println!("libtorch       {}", info["libtorch"].as_str().unwrap_or("unknown"));
    println!("cuda           {}", yes_no("cuda_available"));
    println!("cuda devices   {}", info["cuda_devices"]);
    for (i, name) in info["device_names"].as_array().into_iter().flatten().enumerate() {
        println!("  cuda:{i}       {}", name.as_str().unwrap_or_default());
    }
    println!("cudnn          {}", yes_no("cudnn_available"));
    println!(
        "tf32           {} (process default; `precision: tf32` turns it on for a stage)",
        if info["tf32"].as_bool() == Some(true) { "on" } else { "off" }
    );
    println!("cpu threads    {}", info["threads"]);
    println!("cache          {}  {size}", cache.display());
    if info["cuda_available"].as_bool() != Some(true) && Path::new("/dev/nvidia0").exists() {
        bail!(
            "a GPU is present but LibTorch sees no CUDA: the worker may not link libtorch_cuda (see GPU.md)"
        );
    }
    Ok(())
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_read_as_yaml_scalars() {
        let mut map = Map::new();
        insert_dotted(&mut map, "a.b", brainpipe_pipeline::parse_value("3"));
        insert_dotted(&mut map, "c", brainpipe_pipeline::parse_value("roi"));
        insert_dotted(&mut map, "d", brainpipe_pipeline::parse_value("0.5"));
        insert_dotted(&mut map, "e", brainpipe_pipeline::parse_value("[500, 200]"));
        assert_eq!(
            Value::Object(map),
            json!({"a": {"b": 3}, "c": "roi", "d": 0.5, "e": [500, 200]})
        );
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
    }
}
