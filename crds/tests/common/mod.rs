//! Helpers shared by the CRD test files.

use kube::CustomResourceExt;
use serde_json::Value;

/// The OpenAPI v3 schema of `K`'s first (only) version, as the API server receives it.
pub fn schema_of<K: CustomResourceExt>() -> Value {
    let crd = K::crd();
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .expect("the CRD has a schema")
            .open_api_v3_schema
            .as_ref()
            .expect("the schema has openAPIV3Schema"),
    )
    .expect("a schema serializes")
}
