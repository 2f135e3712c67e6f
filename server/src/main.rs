//! The `oxcd` binary: `oxcd snapshot save|restore|status` runs the snapshot tool; anything else
//! is a member's etcd-style flags, and the member runs until SIGINT or SIGTERM.

use clap::Parser;
use oxcd_server::config::{MemberConfig, normalize_args};
use oxcd_server::error::chain;

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!("received a stop signal, shutting down");
}

fn main() -> std::process::ExitCode {
    let args = normalize_args(std::env::args());
    if args.get(1).map(String::as_str) == Some("snapshot") {
        let program = format!("{} snapshot", args.first().map_or("oxcd", String::as_str));
        return oxcd_server::snapshot::cli::run(
            std::iter::once(program).chain(args.into_iter().skip(2)),
        );
    }
    let cfg = MemberConfig::parse_from(args);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(format!("{},openraft=warn", cfg.log_level))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = oxcd_server::memory::spawn_heap_trimmer(oxcd_server::memory::TRIM_INTERVAL) {
        tracing::warn!(error = %e, "cannot start the heap trimmer; freed memory stays with malloc");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("oxcd: failed to start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(oxcd_server::server::run(cfg, shutdown_signal())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oxcd: {}", chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
