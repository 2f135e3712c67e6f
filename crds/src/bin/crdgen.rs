//! `crdgen`: writes the StoreCluster CRD YAML into `crds/` (for `kubectl apply -f crds/`) and
//! into the Helm chart's `crds/`, or with `--check` fails when either differs from the types.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where the CRD YAML lives, relative to the repository root.
const TARGETS: [&str; 2] = ["crds", "charts/oxcd-operator/crds"];

fn main() -> ExitCode {
    let check = std::env::args().skip(1).any(|arg| arg == "--check");
    // The crate sits one level below the repository root.
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = crate_dir
        .parent()
        .map_or(crate_dir.clone(), Path::to_path_buf);
    let yaml = match oxcd_crds::crd_yaml() {
        Ok(yaml) => yaml,
        Err(error) => {
            eprintln!("crdgen: failed to render the CRD: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut status = ExitCode::SUCCESS;
    for dir in TARGETS {
        let path = root.join(dir).join(oxcd_crds::CRD_FILE_NAME);
        if let Err(message) = handle(&path, &yaml, check) {
            eprintln!("crdgen: {message}");
            status = ExitCode::FAILURE;
        }
    }
    status
}

fn handle(path: &Path, yaml: &str, check: bool) -> Result<(), String> {
    if check {
        let current = std::fs::read_to_string(path).unwrap_or_default();
        if current != yaml {
            return Err(format!(
                "{} is out of date: run `cargo run -p oxcd-crds --bin crdgen`",
                path.display()
            ));
        }
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|error| format!("failed to create {}: {error}", dir.display()))?;
    }
    std::fs::write(path, yaml)
        .map_err(|error| format!("failed to write {}: {error}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
