//! `vembed setup victor`: every change that puts a Victor installation on
//! the vembed host, shown before it is made, kept for `--undo`, and proved
//! at the end by Victor's own tool selection and code search.
//!
//! Victor 0.17.0's processes read their settings from the environment
//! (`VICTOR_*`) and a `.env` in the working directory; `~/.victor/settings.yaml`
//! reaches only `Settings.from_sources`, which its agent, `victor chat` and
//! `victor index` do not call. So setup leaves `settings.yaml` alone and
//! writes a `vembed-victor.pth` into Victor's environment: Python runs it
//! at every start of that environment's interpreter, and it sets defaults
//! (a variable the user set wins) for exactly Victor's processes.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use super::*;

mod changes;
mod ollama;
mod victor_env;

use changes::{FileChange, PackageChange, Record};
use victor_env::{KNOWN_VICTOR, Probe};

/// Wire another program to the vembed host.
#[derive(clap::Args, Debug)]
pub(crate) struct SetupArgs {
    #[command(subcommand)]
    what: SetupWhat,
}

#[derive(Subcommand, Debug)]
enum SetupWhat {
    /// Victor (victor-ai): its tool selection, embeddings and code search on the host.
    Victor(VictorArgs),
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The vembed plug-in in Victor's environment; tool selection through
    /// vembed's sentence-transformers drop-in.
    Plugin,
    /// Also the host's HTTP endpoint on 127.0.0.1:11434, for Victor's
    /// `ollama` embedding provider (and a systemd user unit where systemd runs).
    Ollama,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Plugin => "plugin",
            Mode::Ollama => "ollama",
        }
    }
}

#[derive(clap::Args, Debug)]
struct VictorArgs {
    /// How Victor reaches the host.
    #[arg(long, value_enum, default_value_t = Mode::Plugin)]
    mode: Mode,
    /// The interpreter of Victor's environment [default: the one the
    /// `victor` command on PATH runs].
    #[arg(long)]
    python: Option<PathBuf>,
    /// Install vembed into Victor's environment from this wheel.
    #[arg(long, conflicts_with = "package")]
    wheel: Option<PathBuf>,
    /// ... or from this requirement [default: vembed==<this version>, from
    /// your package index].
    #[arg(long)]
    package: Option<String>,
    /// The model Victor's tool selection and embeddings use.
    #[arg(long, default_value = vembed_models::DEFAULT_MODEL)]
    model: String,
    /// Make the changes without asking.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Show the changes and stop.
    #[arg(long)]
    dry_run: bool,
    /// Put back everything the last setup changed.
    #[arg(long)]
    undo: bool,
    /// With --undo: restore files even if they changed after setup.
    #[arg(long)]
    force: bool,
    /// Proceed with a Victor version setup does not know.
    #[arg(long)]
    any_version: bool,
    /// Skip the proof (Victor's own tool selection and code search).
    #[arg(long)]
    no_proof: bool,
}

pub(super) fn run(cli: &Cli, args: &SetupArgs) -> anyhow::Result<()> {
    let SetupWhat::Victor(a) = &args.what;
    if a.undo { undo(a) } else { setup(cli, a) }
}

fn setup(cli: &Cli, a: &VictorArgs) -> anyhow::Result<()> {
    let python = victor_env::find_python(a.python.as_deref())?;
    let probe = victor_env::probe(&python)?;
    let Some(victor) = &probe.victor_ai else {
        bail!("victor-ai is not installed in {} ({})", probe.prefix.display(), python.display());
    };
    if victor.version != KNOWN_VICTOR && !a.any_version {
        bail!(
            "Victor {} is not a version setup knows (it knows {KNOWN_VICTOR}, whose settings and \
             entry points it was tested with); pass --any-version to try anyway",
            victor.version
        );
    }
    if !probe.writable {
        bail!("{} is not writable by this user", probe.purelib.display());
    }
    let previous = changes::read_record()?;
    if let Some(r) = previous.as_ref().filter(|r| r.mode != a.mode.name()) {
        bail!(
            "Victor was set up in mode {} ({}): run `vembed setup victor --undo` first",
            r.mode,
            changes::record_path().display()
        );
    }
    outln!(
        "Victor {} in {} (Python {}{})",
        victor.version,
        probe.prefix.display(),
        probe.version,
        probe
            .victor_coding
            .as_ref()
            .map_or(String::new(), |c| format!(", victor-coding {}", c.version))
    )?;
    if probe.torch {
        outln!("  (torch is installed there; Victor's processes will not import it)")?;
    }
    let package = package_change(a, &probe)?;
    let mut files = vec![pth_change(a, &probe)?];
    let mut units = Vec::new();
    if a.mode == Mode::Ollama {
        match ollama::port_holder(ollama::OLLAMA_PORT)? {
            ollama::Holder::Other(who) => bail!(
                "{} is held by {who}, not a vembed host (a real Ollama?). Victor's Ollama LLM \
                 provider and its tool selector share that address: stop it, or use --mode plugin",
                ollama::OLLAMA_ADDR
            ),
            ollama::Holder::Free | ollama::Holder::Vembed(_) => {}
        }
        files.extend(ollama::config_change()?);
        if ollama::systemd_user_runs() {
            files.push(ollama::unit_change(&host_bin(cli, &probe, package.is_some()))?);
            units.push(ollama::UNIT.to_string());
        } else {
            outln!(
                "  (systemd does not run for this user here: no unit; the host serves {} whenever it \
                 runs, and the plug-in starts it when Victor starts)",
                ollama::OLLAMA_ADDR
            )?;
        }
    }
    files.retain(|f| f.before.as_deref() != Some(f.after.as_str()));
    warn_environment(a.mode)?;
    let nothing = package.is_none() && files.is_empty();
    if nothing {
        outln!("Victor is already set up for vembed (mode {}): nothing to change", a.mode.name())?;
    } else {
        show_plan(&probe, package.as_ref(), &files)?;
        if a.dry_run {
            outln!("(--dry-run: nothing written)")?;
            return Ok(());
        }
        confirm(a.yes)?;
        apply(a, &python, previous, package, files, units)?;
    }
    if a.dry_run {
        return Ok(());
    }
    let fetch_tty = io::stderr().is_terminal();
    let (dir, source) = vembed_models::fetch(&a.model, fetch_tty)?;
    outln!("model {}: {}", dir.name, super::model::fetch_source(source))?;
    if a.mode == Mode::Ollama {
        restart_host_without_http(cli)?;
    }
    if a.no_proof {
        return Ok(());
    }
    prove(&victor_env::probe(&python)?)
}

/// The wheel or requirement for pip, when Victor's environment lacks this
/// version of vembed.
fn package_change(a: &VictorArgs, probe: &Probe) -> anyhow::Result<Option<PackageChange>> {
    let version = env!("CARGO_PKG_VERSION");
    let have = probe.vembed.as_ref().map(|d| d.version.clone());
    if have.as_deref() == Some(version) {
        return Ok(None);
    }
    let spec = match (&a.wheel, &a.package) {
        (Some(w), _) => std::fs::canonicalize(w)
            .with_context(|| format!("the wheel {}", w.display()))?
            .display()
            .to_string(),
        (None, Some(p)) => p.clone(),
        (None, None) => format!("vembed=={version}"),
    };
    Ok(Some(PackageChange { spec, previous: have }))
}

/// Python source for a str literal.
fn py_str(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The `.pth` file: environment defaults for every process of Victor's
/// interpreter, only while the vembed package is there.
fn pth_change(a: &VictorArgs, probe: &Probe) -> anyhow::Result<FileChange> {
    let tools = match a.mode {
        Mode::Plugin => serde_json::json!({ "embedding_model": a.model }),
        Mode::Ollama => {
            serde_json::json!({ "embedding_provider": "ollama", "embedding_model": a.model })
        }
    };
    let vars = [
        ("VEMBED_VICTOR", "1".to_string()),
        ("VEMBED_VICTOR_MODEL", a.model.clone()),
        ("VICTOR_TOOLS", tools.to_string()),
        ("VICTOR_CODEBASE_VECTOR_STORE", "vembed".to_string()),
    ];
    let pairs: Vec<String> =
        vars.iter().map(|(k, v)| format!("({}, {})", py_str(k), py_str(v))).collect();
    let package_dir = probe.purelib.join("vembed");
    let after = format!(
        "# vembed setup victor --mode {}: Victor's processes in this environment use the vembed host.\n\
         # Variables already set in the environment win. `vembed setup victor --undo` removes this file.\n\
         import os; os.path.isdir({}) and [os.environ.setdefault(k, v) for k, v in ({},)]\n",
        a.mode.name(),
        py_str(&package_dir.display().to_string()),
        pairs.join(", ")
    );
    let path = probe.purelib.join("vembed-victor.pth");
    Ok(FileChange {
        before: changes::read_text(&path)?,
        path,
        after,
        why: format!(
            "Victor's settings for its processes (tool selection on {}, code search on vembed's index)",
            a.model
        ),
    })
}

/// The host binary a systemd unit starts: the one the wheel puts into
/// Victor's environment, else the one this command would start.
fn host_bin(cli: &Cli, probe: &Probe, installing: bool) -> PathBuf {
    let in_env = probe.scripts.join("vembed-host");
    if installing || in_env.is_file() {
        return in_env;
    }
    cli.spawn_options(None).resolve_host_bin().unwrap_or(in_env)
}

fn warn_environment(mode: Mode) -> anyhow::Result<()> {
    for (var, what) in [
        ("VICTOR_TOOLS", "Victor's tool-selection settings"),
        ("VEMBED_VICTOR", "the plug-in switch"),
        ("VICTOR_CODEBASE_VECTOR_STORE", "Victor's code-search store"),
    ] {
        if let Some(v) = std::env::var_os(var) {
            outln!(
                "  note: {var}={} is set in this shell and wins over setup's default for {what} (mode {})",
                v.to_string_lossy(),
                mode.name()
            )?;
        }
    }
    Ok(())
}

fn show_plan(
    probe: &Probe,
    package: Option<&PackageChange>,
    files: &[FileChange],
) -> anyhow::Result<()> {
    outln!("\nvembed setup will:")?;
    if let Some(p) = package {
        outln!(
            "* install {} into {}{}:\n    {} -m pip install --no-deps {}",
            p.spec,
            probe.prefix.display(),
            p.previous.as_ref().map_or(String::new(), |v| format!(" (replacing vembed {v})")),
            probe.executable.display(),
            p.spec
        )?;
    }
    for f in files {
        outln!("* {}:\n{}", f.why, f.diff())?;
    }
    outln!("A record of these changes goes to {} (for --undo).", changes::record_path().display())?;
    Ok(())
}

fn confirm(yes: bool) -> anyhow::Result<()> {
    if yes {
        return Ok(());
    }
    if !io::stdin().is_terminal() {
        bail!("not a terminal: pass --yes to make these changes (or --dry-run to only show them)");
    }
    errln!("Make these changes? [y/N] ");
    let mut line = String::new();
    io::stdin().read_line(&mut line)?;
    if !matches!(line.trim(), "y" | "Y" | "yes") {
        bail!("nothing changed");
    }
    Ok(())
}

fn apply(
    a: &VictorArgs,
    python: &Path,
    previous: Option<Record>,
    package: Option<PackageChange>,
    files: Vec<FileChange>,
    units: Vec<String>,
) -> anyhow::Result<()> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let mut record = previous.unwrap_or_else(|| Record {
        mode: a.mode.name().into(),
        python: python.to_path_buf(),
        files: Vec::new(),
        package: None,
        units_enabled: Vec::new(),
        at_unix: now,
    });
    // A file setup already changed keeps its first "before".
    for f in &files {
        match record.files.iter_mut().find(|r| r.path == f.path) {
            Some(r) => r.after = f.after.clone(),
            None => record.files.push(f.clone()),
        }
    }
    if record.package.is_none() {
        record.package = package.clone();
    }
    record.units_enabled.extend(units.iter().cloned());
    record.units_enabled.dedup();
    changes::write_record(&record)?;
    if let Some(p) = &package {
        let probe = victor_env::probe(python)?;
        victor_env::pip(&probe, &["install", "--no-deps", &p.spec])?;
    }
    for f in &files {
        f.apply()?;
        outln!("wrote {}", f.path.display())?;
    }
    for unit in &units {
        ollama::systemctl(&["daemon-reload"])?;
        ollama::systemctl(&["enable", "--now", unit])?;
        outln!("enabled and started {unit} (systemd user unit)")?;
    }
    Ok(())
}

/// A host that runs without the HTTP address keeps running that way: stop
/// it (it finishes requests in flight) so the next one serves the address.
fn restart_host_without_http(cli: &Cli) -> anyhow::Result<()> {
    if let ollama::Holder::Vembed(_) = ollama::port_holder(ollama::OLLAMA_PORT)? {
        return Ok(());
    }
    match Client::connect(&cli.spawn_options(None).socket) {
        Ok(mut c) => {
            let pid = c.hello().pid;
            c.shutdown()?;
            outln!(
                "stopped the running host (pid {pid}) so the next one serves {}",
                ollama::OLLAMA_ADDR
            )?;
        }
        Err(vembed::Error::NotRunning { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

fn prove(probe: &Probe) -> anyhow::Result<()> {
    outln!("\nproof: Victor's own tool selection and code search, in a new Victor process ...")?;
    let p = victor_env::prove(probe)?;
    let code = p.code.as_ref();
    outln!(
        "  Victor {}: tool selection ({} {} at {}) in {:.1} ms: {}\n  its query vector vs the host's: cosine {:.6}",
        p.victor,
        p.tools.provider,
        p.tools.model,
        p.tools.ollama_base_url,
        p.select_ms,
        p.picks.join(", "),
        p.query_cosine
    )?;
    if let Some(c) = code {
        outln!(
            "  `code search \"{}\"` ({}, {:.0} ms, store {}):\n    {}",
            c.query,
            c.source,
            c.ms,
            p.codebase_vector_store.as_deref().unwrap_or("-"),
            c.text.lines().take(3).collect::<Vec<_>>().join("\n    ")
        )?;
    }
    outln!(
        "  sentence_transformers is {}; torch imported: {}",
        p.sentence_transformers.as_deref().unwrap_or("not imported"),
        p.torch
    )?;
    let mut wrong = p.errors.clone();
    if p.picks.is_empty() {
        wrong.push("no tool was selected".into());
    }
    if p.query_cosine < 0.9999 {
        wrong.push(format!(
            "Victor's query vector is not the host's (cosine {:.4}): it fell back to random vectors",
            p.query_cosine
        ));
    }
    if p.torch {
        wrong.push("torch was imported".into());
    }
    match code {
        Some(c) if c.source != "entry-point:code_search" => {
            wrong.push(format!("code search went to {} instead of vembed", c.source))
        }
        Some(c) if !c.text.lines().next().unwrap_or_default().contains("auth/passwords.py") => {
            wrong.push("code search did not rank auth/passwords.py first".into())
        }
        Some(_) => {}
        None => wrong.push("no code search ran".into()),
    }
    if !wrong.is_empty() {
        bail!("the proof failed: {}", wrong.join("; "));
    }
    outln!("Victor is on vembed. `vembed setup victor --undo` puts everything back.")?;
    Ok(())
}

fn undo(a: &VictorArgs) -> anyhow::Result<()> {
    let Some(record) = changes::read_record()? else {
        bail!("nothing to undo: no setup record at {}", changes::record_path().display());
    };
    let mut failed = Vec::new();
    for unit in &record.units_enabled {
        if a.dry_run {
            outln!("* systemctl --user disable --now {unit}")?;
        } else if let Err(e) = ollama::systemctl(&["disable", "--now", unit]) {
            failed.push(format!("{e:#}"));
        }
    }
    for f in record.files.iter().rev() {
        let now = changes::read_text(&f.path)?;
        outln!(
            "* restore {}:\n{}",
            f.path.display(),
            changes::diff(&f.path, now.as_deref(), f.before.as_deref())
        )?;
        if a.dry_run {
            continue;
        }
        if let Err(e) = f.undo(a.force) {
            failed.push(format!("{e:#}"));
        }
    }
    if let Some(p) = &record.package {
        match &p.previous {
            Some(v) => outln!(
                "vembed {v} was replaced by {} in Victor's environment; `pip install vembed=={v}` there puts it back",
                env!("CARGO_PKG_VERSION")
            )?,
            None if a.dry_run => outln!("* pip uninstall vembed from {}", record.python.display())?,
            None => match victor_env::probe(&record.python) {
                Ok(probe) if probe.vembed.is_some() => {
                    if let Err(e) = victor_env::pip(&probe, &["uninstall", "-y", "vembed"]) {
                        failed.push(format!("{e:#}"));
                    }
                }
                Ok(_) => {}
                Err(e) => failed.push(format!("{e:#}")),
            },
        }
    }
    if a.dry_run {
        outln!("(--dry-run: nothing changed)")?;
        return Ok(());
    }
    if !failed.is_empty() {
        bail!("undo left some changes in place: {}", failed.join("; "));
    }
    changes::remove_record()?;
    outln!("Victor is as it was before `vembed setup victor`.")?;
    Ok(())
}
