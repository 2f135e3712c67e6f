//! Custom resource types of the oxcd operator (group `oxcd.io`): the `StoreCluster` kind, its
//! backups and restore source, its status and conditions, and the generation of the CRD manifest that `crdgen` writes.
//!
//! Every field carries a `///` line because it becomes the `kubectl explain` text; invariants and
//! transitions are CEL rules (`x-kubernetes-validations`) enforced by the API server itself.

mod backup;
mod generate;
mod restore;
mod spec;
mod status;

pub use backup::*;
pub use generate::{CRD_FILE_NAME, crd, crd_yaml};
pub use restore::*;
pub use spec::*;
pub use status::*;

/// API group of every oxcd custom resource.
pub const GROUP: &str = "oxcd.io";

/// API version of the StoreCluster kind.
pub const VERSION: &str = "v1alpha1";
