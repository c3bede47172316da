//! Whether this node and each of its peers agree on the shapes of what both serve.

use std::sync::Arc;

use ractor::ActorId;
use serde::{Deserialize, Serialize};

use super::super::wire::{self, Request};
use super::sessions::PeerState;
use super::{ClusterShared, Serving};

/// What differs between this node and another: an action or an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum SchemaKind {
    /// An action: its parameters' or its reply's type.
    Action,
    /// An event: its payload's type.
    Event,
}

/// An action or event that another node serves with other types than this node declares: the
/// two builds disagree on its shape, so calls and subscriptions to it are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "http", derive(utoipa::ToSchema))]
pub struct SchemaMismatch {
    /// The other node (`node@host`).
    pub node: String,
    /// The service both nodes know.
    pub service: String,
    /// An action or an event.
    pub kind: SchemaKind,
    /// The action's or the event's name.
    pub name: String,
}

impl std::fmt::Display for SchemaMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            SchemaKind::Action => "action",
            SchemaKind::Event => "event",
        };
        write!(
            f,
            "{kind} `{}.{}` on {}",
            self.service, self.name, self.node
        )
    }
}

impl ClusterShared {
    pub(super) fn compared(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (ActorId, Vec<SchemaMismatch>)>>
    {
        self.compared.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn schema_mismatches(&self) -> Vec<SchemaMismatch> {
        let mut all: Vec<SchemaMismatch> = self
            .compared()
            .values()
            .flat_map(|(_, m)| m.iter().cloned())
            .collect();
        all.sort_by(|a, b| (&a.node, &a.service, &a.name).cmp(&(&b.node, &b.service, &b.name)));
        all
    }

    /// Asks every ready node not compared yet for the schemas of what it serves, and compares
    /// them with this runtime's declarations of the same services.
    pub(super) async fn compare_schemas(self: &Arc<Self>) {
        let done: std::collections::HashMap<String, ActorId> = self
            .compared()
            .iter()
            .map(|(node, (gateway, _))| (node.clone(), *gateway))
            .collect();
        let todo: Vec<Serving> = self
            .peers
            .iter()
            .filter(|p| p.info.state == PeerState::Ready)
            .filter_map(|p| {
                let node = p.info.node.clone()?;
                let gateway = self.gateway_now(&node)?.get_cell();
                if done.get(&node) == Some(&gateway.get_id()) {
                    return None;
                }
                Some(Serving {
                    gateway,
                    node,
                    lost: p.lost.clone(),
                })
            })
            .collect();
        let asked = todo.into_iter().map(|to| {
            let asked = self.call(&to, Request::Catalog);
            let within = self.config.handshake_timeout;
            async move { (tokio::time::timeout(within, asked).await, to) }
        });
        for (asked, to) in futures::future::join_all(asked).await {
            // Not answered (lost, or slow): the next change asks again.
            let Ok(Ok(bytes)) = asked else { continue };
            let theirs: Vec<super::super::ServiceSchemas> = match wire::decode(&bytes) {
                Ok(theirs) => theirs,
                Err(err) => {
                    self.undecodable(Some(&to.node), "a list of schemas", &err);
                    continue;
                }
            };
            let mismatches = self.differences(&to.node, &theirs);
            if !mismatches.is_empty() {
                let listed: Vec<String> = mismatches.iter().map(ToString::to_string).collect();
                tracing::warn!(
                    node = %to.node,
                    "a node serves these with other types than this node declares; calls and \
                     subscriptions to them are refused as incompatible: {}",
                    listed.join(", ")
                );
            }
            self.compared()
                .insert(to.node.clone(), (to.gateway.get_id(), mismatches));
            self.bump();
        }
    }

    /// What `node` serves with another schema than this runtime declares.
    fn differences(
        &self,
        node: &str,
        theirs: &[super::super::ServiceSchemas],
    ) -> Vec<SchemaMismatch> {
        let Some(runtime) = self.runtime.upgrade() else {
            return Vec::new();
        };
        let mut found = Vec::new();
        for service in theirs {
            let Some(ours) = runtime.by_name.get(&service.service).map(|s| s.schemas()) else {
                continue;
            };
            let items = [
                (SchemaKind::Action, &service.actions, &ours.actions),
                (SchemaKind::Event, &service.events, &ours.events),
            ];
            for (kind, theirs, ours) in items {
                for (name, hash) in theirs {
                    if ours.iter().any(|(n, h)| n == name && h != hash) {
                        found.push(SchemaMismatch {
                            node: node.to_owned(),
                            service: service.service.clone(),
                            kind,
                            name: name.clone(),
                        });
                    }
                }
            }
        }
        found
    }
}
