//! Writing children: server-side apply with the operator's one field manager (forced, so the
//! operator owns what it declares), skipped when the object already carries the hash of what
//! would be applied, so a steady cluster causes no writes; and deletion of children that are no
//! longer declared, found by label.

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::metrics::Metrics;
use crate::names::{FIELD_MANAGER, INSTANCE_LABEL, MANAGED_BY, MANAGED_BY_LABEL, fnv1a};

/// Annotation holding the hash of the applied object.
pub const APPLIED_HASH: &str = "oxcd.io/applied-hash";

/// Why writing a child failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Server-side apply was refused.
    #[error("failed to apply {kind} {name}")]
    Apply {
        /// Kind of the child.
        kind: String,
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Reading the current object failed.
    #[error("failed to read {kind} {name}")]
    Read {
        /// Kind of the child.
        kind: String,
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// Deleting an orphan failed.
    #[error("failed to delete {kind} {name}")]
    Delete {
        /// Kind of the child.
        kind: String,
        /// Its name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The object cannot be serialized (a bug).
    #[error("failed to serialize {kind}")]
    Serialize {
        /// Kind of the child.
        kind: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

/// Writes children of one StoreCluster in one namespace.
pub struct Applier<'a> {
    client: Client,
    namespace: String,
    metrics: &'a Metrics,
}

impl<'a> Applier<'a> {
    /// An applier for `namespace`.
    pub fn new(client: Client, namespace: &str, metrics: &'a Metrics) -> Self {
        Self {
            client,
            namespace: namespace.to_owned(),
            metrics,
        }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// Applies `object` unless the live object already carries its hash. Returns whether it
    /// wrote.
    pub async fn apply<K>(&self, object: K) -> Result<bool, ApplyError>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + Serialize + DeserializeOwned,
        K::DynamicType: Default,
    {
        let kind = K::kind(&K::DynamicType::default()).into_owned();
        self.apply_with(self.api::<K>(), kind, object).await
    }

    /// [`Applier::apply`] for a kind known only at run time (such as cert-manager's).
    pub async fn apply_dynamic(
        &self,
        object: DynamicObject,
        resource: &ApiResource,
    ) -> Result<bool, ApplyError> {
        let api = Api::namespaced_with(self.client.clone(), &self.namespace, resource);
        self.apply_with(api, resource.kind.clone(), object).await
    }

    async fn apply_with<K>(
        &self,
        api: Api<K>,
        kind: String,
        mut object: K,
    ) -> Result<bool, ApplyError>
    where
        K: Resource + Clone + Debug + Serialize + DeserializeOwned,
    {
        let name = object.name_any();
        let body = serde_json::to_vec(&object).map_err(|source| ApplyError::Serialize {
            kind: kind.clone(),
            source,
        })?;
        let hash = format!("{:016x}", fnv1a(&body));
        let live = api
            .get_opt(&name)
            .await
            .map_err(|source| ApplyError::Read {
                kind: kind.clone(),
                name: name.clone(),
                source,
            })?;
        if live.is_some_and(|live| live.annotations().get(APPLIED_HASH) == Some(&hash)) {
            return Ok(false);
        }
        object
            .annotations_mut()
            .insert(APPLIED_HASH.to_owned(), hash);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(&name, &params, &Patch::Apply(&object))
            .await
            .map_err(|source| ApplyError::Apply {
                kind: kind.clone(),
                name,
                source,
            })?;
        self.metrics.wrote(&kind, "apply");
        Ok(true)
    }

    /// Deletes the children of kind `K` of StoreCluster `cluster` not named in `keep`.
    pub async fn delete_orphans<K>(&self, cluster: &str, keep: &[String]) -> Result<(), ApplyError>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + Debug + DeserializeOwned,
        K::DynamicType: Default,
    {
        let kind = K::kind(&K::DynamicType::default()).into_owned();
        let api = self.api::<K>();
        let selector = format!("{INSTANCE_LABEL}={cluster},{MANAGED_BY_LABEL}={MANAGED_BY}");
        let list = api
            .list_metadata(&ListParams::default().labels(&selector))
            .await
            .map_err(|source| ApplyError::Read {
                kind: kind.clone(),
                name: selector.clone(),
                source,
            })?;
        for object in list.items {
            let name = object.name_any();
            if keep.contains(&name) || object.metadata.deletion_timestamp.is_some() {
                continue;
            }
            api.delete(&name, &DeleteParams::default())
                .await
                .map_err(|source| ApplyError::Delete {
                    kind: kind.clone(),
                    name: name.clone(),
                    source,
                })?;
            self.metrics.wrote(&kind, "delete");
            tracing::info!(%kind, %name, "deleted a child no longer declared");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_is_fnv1a_so_it_stays_the_same_across_releases() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
