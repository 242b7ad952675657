//! `scripted-model`: serve scripted conversations to agent CLIs. See README.md.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use scripted_model::server::{router, Config};

/// Command-line flags (each also readable from the environment variable shown).
#[derive(Debug, Parser)]
#[command(version, about = "A scripted LLM endpoint for agent-CLI tests")]
struct Args {
    /// Address to listen on; port 0 picks a free port (the chosen address is logged as
    /// `listening on ADDR`).
    #[arg(long, env = "SCRIPTED_MODEL_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Directory with `<name>.json` scripts.
    #[arg(long, env = "SCRIPTED_MODEL_SCRIPTS")]
    scripts: PathBuf,
    /// Milliseconds between keepalive events while a turn sleeps.
    #[arg(long, env = "SCRIPTED_MODEL_KEEPALIVE_MS", default_value_t = 5000)]
    keepalive_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    anyhow::ensure!(
        args.scripts.is_dir(),
        "scripts directory {} does not exist",
        args.scripts.display()
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!("listening on {addr} scripts={}", args.scripts.display());
    let app = router(Config {
        scripts_dir: args.scripts,
        keepalive: Duration::from_millis(args.keepalive_ms),
    });
    tokio::select! {
        served = axum::serve(listener, app) => served.context("server failed")?,
        _ = shutdown_signal() => tracing::info!("shutting down"),
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM (open streams are dropped, not drained).
async fn shutdown_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
