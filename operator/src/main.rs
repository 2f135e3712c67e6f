//! oxcd-operator entry point. The reconciler (StoreCluster → StatefulSet, Services, TLS, policy)
//! is the operator issue's work; until it lands the binary states so instead of pretending.

use clap::Parser;

/// Command line of the oxcd operator.
#[derive(Debug, Parser)]
#[command(
    name = "oxcd-operator",
    version,
    about = "Kubernetes operator for oxcd clusters"
)]
struct Args {}

fn main() -> anyhow::Result<()> {
    let _args = Args::parse();
    anyhow::bail!(
        "the StoreCluster reconciler ({}/{}) is not implemented yet",
        oxcd_crds::GROUP,
        oxcd_crds::VERSION
    )
}
