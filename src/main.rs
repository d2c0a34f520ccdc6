//! The `wispctl` binary: parse arguments, set up logging, run one command, exit with its code.

use std::process::ExitCode;

use clap::Parser;
use wispctl::cli::{Cli, Invocation};
use wispctl::{app, exit, lab};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let mut out = std::io::stdout().lock();
    let result = runtime.block_on(async {
        match cli.into_invocation() {
            Invocation::Validate(g) => app::validate(&g, &mut out),
            Invocation::Plan(g, o) => app::plan(&g, &o, &mut out).await,
            Invocation::Drift(g, o) => app::drift(&g, &o, &mut out).await,
            Invocation::Apply(g, o) => app::apply(&g, &o, &mut out).await,
            Invocation::Schema { out: dir, check } => app::schema(&dir, check, &mut out),
            Invocation::LabInit(dir) => lab::init(&dir)
                .map(|()| {
                    println!(
                        "lab created in {}; use --lab {} with any command",
                        dir.display(),
                        dir.display()
                    );
                    exit::SUCCESS
                })
                .map_err(Into::into),
            Invocation::Demo(g, keep) => lab::demo::run(&g.dir, keep, g.color, &mut out).await,
            Invocation::ImportPppoe(g, o) => app::import_pppoe(&g, &o, &mut out).await,
            Invocation::ImportUisp(g, o) => app::import_uisp(&g, &o, &mut out).await,
            Invocation::AcceptHostKey {
                g,
                group,
                host,
                fingerprint,
            } => app::accept_host_key(&g, &group, &host, &fingerprint, &mut out),
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::ERROR)
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    use std::io::IsTerminal;
    // Cron logs are files: no colour codes there.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
