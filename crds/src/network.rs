//! Where a run's agent may connect: the egress allowlist of a pool (`spec.network`) and of a
//! run (`spec.network`, within the pool's).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Egress allowlist.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkSpec {
    /// Hosts the agent may connect to (at most 64). Empty: none.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub egress: Vec<EgressRule>,
}

/// One allowed destination.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EgressRule {
    /// Host name (`github.com`) or a wildcard for its subdomains (`*.githubusercontent.com`,
    /// which does not match the bare domain). Lowercase; no scheme, port or path.
    #[x_kube(validation = Rule::new("self.matches('^(\\\\*\\\\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\\\\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$')").message("egress host must be a lowercase host name, optionally starting with '*.'"))]
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// Ports (default: 443).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub ports: Vec<u16>,
}
