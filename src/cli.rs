//! Command-line arguments (clap) and their conversion into the app's options. No business
//! logic lives here.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::app::{self, ApplyOptions, Globals, ReadOptions};
use crate::plan::render::Format;

/// Keeps a wireless ISP's network in line with YAML files in git.
#[derive(Debug, Parser)]
#[command(name = "wispctl", version, about, long_about = None)]
pub struct Cli {
    /// The desired-state folder.
    #[arg(
        short = 'C',
        long,
        global = true,
        default_value = "desired-state",
        env = "WISPCTL_DIR"
    )]
    pub dir: PathBuf,
    /// State folder (hash key, apply lock). Default: $XDG_STATE_HOME/wispctl or ~/.local/state/wispctl.
    #[arg(long, global = true, env = "WISPCTL_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Run against the lab in this folder (see `wispctl lab init`) instead of real targets.
    #[cfg(feature = "lab")]
    #[arg(long, global = true, env = "WISPCTL_LAB")]
    pub lab: Option<PathBuf>,
    /// More logging on stderr: -v info, -vv debug, -vvv trace (RUST_LOG overrides).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Colour in text output.
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub color: Color,
    /// Log lines on stderr as text, or as JSON objects (one per line) for a log collector.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// When to colour.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Color {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// For people.
    Text,
    /// One JSON object per line.
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the YAML offline; exit 1 with file:line:column on any problem.
    Validate,
    /// Show what apply would change.
    Plan(PlanArgs),
    /// Read every target once and write what was read, with no secret value, for `plan
    /// --snapshot` where the devices cannot be reached (CI).
    Snapshot(SnapshotArgs),
    /// Make the changes (asks on a terminal; --auto-approve for cron).
    Apply(ApplyArgs),
    /// Report what differs from the YAML; changes nothing; exit 2 when drift is found.
    Drift(DriftArgs),
    /// Run as a controller until SIGTERM: reconcile each target on its schedule (observe, or
    /// apply within the guards and maintenance windows, per the inventory's `reconcile:`),
    /// keep a history (`wispctl status`), notify, serve /healthz, /readyz and /metrics.
    /// SIGHUP reloads the desired state.
    Reconcile(ReconcileArgs),
    /// Print the controller's status and history (while it runs, and after).
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: StatusFormatArg,
    },
    /// Write the JSON Schemas of the YAML files and the plan.
    Schema(SchemaArgs),
    /// Scaffold a network repository in DIR (new or empty): the example desired state, the
    /// schemas and editor settings, .gitignore, a README, CI workflows that plan every change
    /// against the VPS's snapshot, and the VPS's snapshot timer.
    Init {
        /// The folder to create.
        dir: PathBuf,
    },
    /// Manage a lab.
    #[cfg(feature = "lab")]
    #[command(subcommand)]
    Lab(LabCommand),
    /// Run the demo on a fresh lab: plan, apply, plan, an out-of-band edit, drift.
    #[cfg(feature = "lab")]
    Demo(DemoArgs),
    /// Write YAML for what a target holds today, so that the next plan shows no changes
    /// (`import pppoe ROUTER`, `import uisp SERVER`).
    Import(ImportArgs),
    /// Pin an antenna's (or its group's jump host's) SSH host key after checking it: how a
    /// changed key (a reset or replaced device) is accepted explicitly.
    AcceptHostKey {
        /// The target whose devices speak SSH: an antenna group, as named in inventory.yaml.
        group: String,
        /// The antenna's host as the YAML names it, or the group's jump host.
        host: String,
        /// The new key's fingerprint, `SHA256:...` (as the refusal printed it, or as
        /// `ssh-keygen -lf` prints it on the device).
        fingerprint: String,
    },
}

/// `import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The kind: `pppoe` (a router's PPPoE secrets; passwords go to a separate env file, never
    /// into the YAML) or `uisp` (a UISP server's sites and device assignments; unauthorized
    /// devices and ghosts left out).
    pub kind: String,
    /// The target, as named in inventory.yaml (a router, a UISP server).
    pub target: String,
    /// Where to write the YAML (default DIR/KIND/TARGET.yaml; never overwritten without --force).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where to write the secrets the YAML references, as NAME=value lines, mode 0600 (default
    /// STATE_DIR/import/TARGET.env); refused inside the desired-state folder.
    #[arg(long)]
    pub secrets_file: Option<PathBuf>,
    /// Overwrite an existing YAML file.
    #[arg(long)]
    pub force: bool,
}

/// Target selection and guards.
#[derive(Debug, Args)]
pub struct Selection {
    /// Only targets whose address (`pppd.vps`) or name matches this glob; repeatable.
    #[arg(long = "target", value_name = "GLOB")]
    pub targets: Vec<String>,
    /// Most deletes allowed in this run (overrides guards.max_deletes).
    #[arg(long)]
    pub max_deletes: Option<usize>,
    /// Most active sessions this run may disconnect (overrides guards.max_disconnects).
    #[arg(long)]
    pub max_disconnects: Option<usize>,
    /// Trust the SSH host key of an antenna (or jump host) the known-hosts file does not list
    /// yet, for this run; `apply` records it, `plan` and `drift` write nothing. A key that
    /// differs from the recorded one is refused regardless.
    #[arg(long)]
    pub trust_new_host_keys: bool,
}

/// `plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Save the plan (JSON, no secrets) for `apply FILE`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Exit 2 when there are changes (0 none, 1 error).
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Plan against this snapshot (written by `wispctl snapshot`) instead of reading the
    /// targets: no network at all. Needs the key it was made under (WISPCTL_HASH_KEY).
    #[arg(long, value_name = "FILE")]
    pub snapshot: Option<PathBuf>,
    /// With --snapshot: refuse a snapshot older than this, such as 6h or 2d.
    #[arg(long, default_value = "1d", value_parser = humantime::parse_duration)]
    pub max_age: Duration,
    /// With --snapshot: what to do with a desired-state secret whose reference cannot be
    /// resolved here: `fail` (the default: a validation error) or `not-compared` (shown as
    /// "(sensitive, not compared)", counted in the summary).
    #[arg(long, value_enum, default_value = "fail", requires = "snapshot")]
    pub unresolved_secrets: UnresolvedSecrets,
    /// Target selection and guards.
    #[command(flatten)]
    pub selection: Selection,
}

/// `plan --unresolved-secrets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UnresolvedSecrets {
    /// A validation error, as everywhere else.
    Fail,
    /// Shown as "(sensitive, not compared)" and counted.
    NotCompared,
}

/// `snapshot`.
#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Where to write it (default STATE_DIR/snapshot.json); mode 0600.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only targets whose address (`pppd.vps`) or name matches this glob; repeatable.
    #[arg(long = "target", value_name = "GLOB")]
    pub targets: Vec<String>,
}

/// `status --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormatArg {
    /// For people.
    Text,
    /// `status.json` as it is.
    Json,
}

/// `reconcile`.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Serve /healthz, /readyz and /metrics here (`off`: not at all).
    #[arg(long, default_value = "127.0.0.1:9464", value_parser = parse_listen)]
    pub listen: Listen,
    /// Follow REMOTE's BRANCH: fetch it every `reconcile.poll` and fast-forward the checkout
    /// that holds the desired-state folder (never a merge; local changes or a diverged branch
    /// are refused and reported).
    #[arg(long, num_args = 2, value_names = ["REMOTE", "BRANCH"])]
    pub git: Option<Vec<String>>,
    /// Reconcile every target once, then exit (0 in line or healed, 2 drift left, 1 a failure).
    #[arg(long)]
    pub once: bool,
    /// How long a reconcile waits for the apply lock held by a hand-run apply.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub lock_timeout: Duration,
    /// At SIGTERM or a reload: how long reconciles in flight may take to finish before they
    /// are abandoned.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub stop_grace: Duration,
}

/// `--listen`: an address, or `off`.
#[derive(Debug, Clone, Copy)]
pub struct Listen(pub Option<std::net::SocketAddr>);

fn parse_listen(s: &str) -> Result<Listen, String> {
    if s == "off" {
        return Ok(Listen(None));
    }
    s.parse()
        .map(|a| Listen(Some(a)))
        .map_err(|e| format!("{s:?} is not an address such as 127.0.0.1:9464 (or off): {e}"))
}

/// `drift`.
#[derive(Debug, Args)]
pub struct DriftArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Also send notifications (the inventory's `reconcile.notify`) for targets whose state
    /// changed since the last `drift --notify`: new drift, resolved, unreachable.
    #[arg(long)]
    pub notify: bool,
    /// Target selection and guards.
    #[command(flatten)]
    pub selection: Selection,
}

/// `apply`.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved with `plan --out`; refused when any target moved since.
    pub plan: Option<PathBuf>,
    /// Apply without asking (required without a terminal).
    #[arg(long)]
    pub auto_approve: bool,
    /// The lock file (default STATE_DIR/apply.lock).
    #[arg(long)]
    pub lock_file: Option<PathBuf>,
    /// How long to wait for another apply to finish, such as 30s or 2m.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub lock_timeout: Duration,
    /// Also write the apply report as JSON (`schemas/apply-report.schema.json`) to this file,
    /// atomically, once the changes are made: for cron and for monitoring.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write even outside the maintenance windows (`reconcile.windows`): only for a person
    /// at a terminal; refused without one.
    #[arg(long)]
    pub ignore_windows: bool,
    /// Target selection and guards.
    #[command(flatten)]
    pub selection: Selection,
}

/// `schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Where to write.
    #[arg(long, default_value = "schemas")]
    pub out: PathBuf,
    /// Only check that the files there are up to date (exit 1 if not).
    #[arg(long)]
    pub check: bool,
}

/// `lab`.
#[cfg(feature = "lab")]
#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Create a lab in DIR, seeded like a real VPS; then use `--lab DIR` with any command.
    Init {
        /// The lab folder.
        dir: PathBuf,
    },
    /// Serve the twins of lab DIR for the desired state's targets from this process, on
    /// loopback ports, until SIGTERM or Ctrl-C: `--lab DIR` in other commands then reaches
    /// them, and so can any client (addresses printed and kept in DIR/serve.json).
    Serve {
        /// The lab folder.
        #[arg(value_name = "DIR")]
        lab_dir: PathBuf,
    },
}

/// `demo`.
#[cfg(feature = "lab")]
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the lab in this folder instead of a temporary one.
    #[arg(long)]
    pub keep: Option<PathBuf>,
}

/// What `main` runs: the globals and one command, in the app's terms.
pub enum Invocation {
    /// validate
    Validate(Globals),
    /// plan
    Plan(Globals, ReadOptions),
    /// snapshot
    Snapshot(Globals, app::SnapshotOptions),
    /// drift
    Drift(Globals, ReadOptions),
    /// reconcile
    Reconcile(Globals, app::ReconcileOptions),
    /// status
    Status(Globals, app::StatusFormat),
    /// apply
    Apply(Globals, ApplyOptions),
    /// init DIR
    Init(PathBuf),
    /// schema
    Schema {
        /// Folder.
        out: PathBuf,
        /// Check only.
        check: bool,
    },
    /// lab init
    #[cfg(feature = "lab")]
    LabInit(PathBuf),
    /// lab serve
    #[cfg(feature = "lab")]
    LabServe(Globals, PathBuf),
    /// demo
    #[cfg(feature = "lab")]
    Demo(Globals, Option<PathBuf>),
    /// import KIND TARGET
    Import(Globals, app::ImportOptions),
    /// accept-host-key
    AcceptHostKey {
        /// Global options.
        g: Globals,
        /// Antenna group.
        group: String,
        /// Host.
        host: String,
        /// `SHA256:...`.
        fingerprint: String,
    },
}

impl Cli {
    /// Converts parsed arguments into an invocation.
    pub fn into_invocation(self) -> Invocation {
        let color = match self.color {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
        };
        #[cfg(feature = "lab")]
        let state_dir = self.state_dir.clone().unwrap_or_else(|| match &self.lab {
            Some(lab) => lab.join("state"),
            None => app::default_state_dir(),
        });
        #[cfg(not(feature = "lab"))]
        let state_dir = self
            .state_dir
            .clone()
            .unwrap_or_else(app::default_state_dir);
        let g = Globals {
            dir: self.dir,
            state_dir,
            #[cfg(feature = "lab")]
            lab: self.lab,
            color,
        };
        let read = |format, out, s: Selection, detailed_exitcode| ReadOptions {
            format,
            out,
            targets: s.targets,
            detailed_exitcode,
            max_deletes: s.max_deletes,
            max_disconnects: s.max_disconnects,
            trust_new_host_keys: s.trust_new_host_keys,
            snapshot: None,
            max_age: crate::snapshot::DEFAULT_MAX_AGE,
            not_compared: false,
            notify: false,
        };
        match self.command {
            Command::Validate => Invocation::Validate(g),
            Command::Plan(a) => Invocation::Plan(
                g,
                ReadOptions {
                    snapshot: a.snapshot,
                    max_age: a.max_age,
                    not_compared: a.unresolved_secrets == UnresolvedSecrets::NotCompared,
                    ..read(a.format, a.out, a.selection, a.detailed_exitcode)
                },
            ),
            Command::Snapshot(a) => Invocation::Snapshot(
                g,
                app::SnapshotOptions {
                    out: a.out,
                    targets: a.targets,
                },
            ),
            Command::Drift(a) => Invocation::Drift(
                g,
                ReadOptions {
                    notify: a.notify,
                    ..read(a.format, None, a.selection, true)
                },
            ),
            Command::Reconcile(a) => Invocation::Reconcile(
                g,
                app::ReconcileOptions {
                    listen: a.listen.0,
                    git: a.git.map(|v| (v[0].clone(), v[1].clone())),
                    once: a.once,
                    lock_timeout: a.lock_timeout,
                    stop_grace: a.stop_grace,
                },
            ),
            Command::Status { format } => Invocation::Status(
                g,
                match format {
                    StatusFormatArg::Text => app::StatusFormat::Text,
                    StatusFormatArg::Json => app::StatusFormat::Json,
                },
            ),
            Command::Apply(a) => Invocation::Apply(
                g,
                ApplyOptions {
                    plan_file: a.plan,
                    auto_approve: a.auto_approve,
                    lock_file: a.lock_file,
                    lock_timeout: a.lock_timeout,
                    report_file: a.report,
                    ignore_windows: a.ignore_windows,
                    read: read(Format::Text, None, a.selection, false),
                },
            ),
            Command::Init { dir } => Invocation::Init(dir),
            Command::Schema(a) => Invocation::Schema {
                out: a.out,
                check: a.check,
            },
            #[cfg(feature = "lab")]
            Command::Lab(LabCommand::Init { dir }) => Invocation::LabInit(dir),
            #[cfg(feature = "lab")]
            Command::Lab(LabCommand::Serve { lab_dir }) => Invocation::LabServe(g, lab_dir),
            #[cfg(feature = "lab")]
            Command::Demo(a) => Invocation::Demo(g, a.keep),
            Command::Import(a) => Invocation::Import(
                g,
                app::ImportOptions {
                    kind: a.kind,
                    target: a.target,
                    out: a.out,
                    secrets_file: a.secrets_file,
                    force: a.force,
                },
            ),
            Command::AcceptHostKey {
                group,
                host,
                fingerprint,
            } => Invocation::AcceptHostKey {
                g,
                group,
                host,
                fingerprint,
            },
        }
    }
}
