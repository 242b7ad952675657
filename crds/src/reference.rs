//! References from one Paddock object to another object of its namespace.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// Reference to an object by name in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectRef {
    /// Object name: a DNS subdomain name (RFC 1123), the form Kubernetes requires of Secret,
    /// ConfigMap and RunnerPool names. A name with `/` would make the operator's request path
    /// point elsewhere, so it is refused at admission.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("name must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-' and '.'; starting and ending with a letter or digit)"))]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}
