//! `oxcd-bench compare`: starts etcd 3.6 and oxcd with equivalent settings (1 and 3 members on
//! loopback, fsync on, data on the same filesystem), drives the same workloads against both with
//! etcd's own `benchmark` tool and with our Rust load generator, alternating the two systems
//! round by round, and prints a markdown table with the oxcd/etcd ratio of every row (and writes
//! a PNG chart). Only ratios from one run mean anything: absolute numbers move between machines.

mod loadgen;
mod report;
mod resources;
mod systems;
mod workloads;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Benchmarks of oxcd against etcd.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Runs every workload against etcd and oxcd and prints the comparison.
    Compare {
        /// The short profile (under three minutes): fewer rows and requests.
        #[arg(long)]
        quick: bool,
        /// Rounds per workload and system (alternating etcd, oxcd).
        #[arg(long)]
        rounds: Option<usize>,
        /// Also write the markdown table here.
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Write the chart (PNG) here.
        #[arg(long)]
        chart: Option<PathBuf>,
        /// Only these cluster sizes (repeatable; default 1 and 3).
        #[arg(long = "members")]
        members: Vec<usize>,
        /// Only the workloads of the full profile with these names (repeatable, e.g.
        /// `--only put@1 --only txn-put@256`), at the `--quick` request counts if given: a
        /// targeted before/after run of the rows a change is about.
        #[arg(long = "only")]
        only: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Cmd::Compare {
            quick,
            rounds,
            markdown,
            chart,
            members,
            only,
        } => runtime.block_on(workloads::compare(workloads::Options {
            quick,
            rounds: rounds.unwrap_or(if quick { 2 } else { 3 }),
            markdown,
            chart,
            members: if members.is_empty() {
                vec![1, 3]
            } else {
                members
            },
            only,
        })),
    }
}
