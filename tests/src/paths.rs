//! Where the harness finds the workspace and the tool binaries.

use std::path::{Path, PathBuf};

use crate::error::{HarnessError, Result};

/// Environment variable that overrides the directory of tool binaries.
const BIN_DIR_VAR: &str = "OXCD_BIN_DIR";

/// The workspace root (the parent of the `tests` crate).
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// Directory of the tool binaries: `$OXCD_BIN_DIR`, else `<workspace>/.cache/bin` (which
/// `e2e/toolchain/install` links to the toolchain cache).
pub fn bin_dir() -> PathBuf {
    match std::env::var_os(BIN_DIR_VAR) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => workspace_root().join(".cache").join("bin"),
    }
}

/// Path of the tool binary `name` in [`bin_dir`], or an error naming the installer if it is absent.
pub fn tool(name: &str) -> Result<PathBuf> {
    let path = bin_dir().join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(HarnessError::MissingBinary { path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        assert!(workspace_root().join("Cargo.toml").is_file());
        assert!(workspace_root().join("tests").join("Cargo.toml").is_file());
    }

    #[test]
    fn missing_tool_error_names_the_installer() {
        let err = tool("no-such-tool-oxcd").err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("e2e/toolchain/install")));
    }
}
