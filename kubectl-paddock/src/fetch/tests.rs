//! The shared reads against a fake API server.
use super::*;
use serde_json::json;
use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;

fn gz(text: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

/// A client whose fake API server answers a GET of a path in `objects` with that object, and
/// everything else with 404 NotFound.
fn client(objects: Vec<(String, serde_json::Value)>) -> Client {
    let objects = Arc::new(objects.into_iter().collect::<HashMap<_, _>>());
    let svc = tower::service_fn(move |req: axum::http::Request<kube::client::Body>| {
        let path = req.uri().path().to_string();
        let (code, body) = match objects.get(&path).filter(|_| req.method() == axum::http::Method::GET) {
            Some(obj) => (200, obj.clone()),
            None => (
                404,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound",
                       "code": 404, "message": format!("{path} not found")}),
            ),
        };
        let resp = axum::http::Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(kube::client::Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        std::future::ready(Ok::<_, std::convert::Infallible>(resp))
    });
    Client::new(svc, "default")
}

/// A run that ended with `status.result.patchRef` `patch_ref`.
fn ended_run(name: &str, patch_ref: &str) -> serde_json::Value {
    json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"repo": {"url": "git://h/r.git"}, "agent": {"name": "shell"}, "prompt": "true"},
        "status": {"phase": "Succeeded", "result": {"outcome": "Succeeded", "reason": "Succeeded",
            "message": "", "branch": "paddock/x", "filesChanged": 1, "insertions": 1, "deletions": 0,
            "diffstat": "+1/-0", "logRef": format!("{name}-log"), "patchRef": patch_ref}}})
}

fn configmap(name: &str, data: &[(&str, &str)], patch: &[u8]) -> serde_json::Value {
    let cm = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some("ns".into()),
            ..Default::default()
        },
        data: Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()),
        binary_data: Some(
            [(
                paddock_crds::artifacts::PATCH_KEY.to_string(),
                k8s_openapi::ByteString(patch.to_vec()),
            )]
            .into(),
        ),
        ..Default::default()
    };
    serde_json::to_value(cm).unwrap()
}

/// Issue 23: a run's patch shares its event log's ConfigMap when both fit; runs from before,
/// and patches too large to share, keep it in `<run>-patch`. `kubectl paddock diff` (and the
/// console) read it by `patchRef` from either.
#[tokio::test]
async fn a_patch_is_read_from_the_log_configmap_and_from_one_of_its_own() {
    let diff = "--- a/a.txt\n+++ b/a.txt\n@@ -1 +1,2 @@\n a\n+b\n";
    let cms = "/api/v1/namespaces/ns/configmaps";
    let runs = "/apis/paddock.dev/v1alpha1/namespaces/ns/agentruns";
    let c = client(vec![
        (format!("{runs}/new"), ended_run("new", "new-log")),
        (
            format!("{cms}/new-log"),
            configmap("new-log", &[("events.jsonl", "{}\n")], &gz(diff)),
        ),
        (format!("{runs}/old"), ended_run("old", "old-patch")),
        (format!("{cms}/old-patch"), configmap("old-patch", &[], &gz(diff))),
        (format!("{runs}/gone"), ended_run("gone", "gone-log")),
    ]);
    assert_eq!(fetch_patch(&c, "ns", "new").await.unwrap(), diff);
    assert_eq!(fetch_patch(&c, "ns", "old").await.unwrap(), diff);
    // The ConfigMap it names is gone: said so, naming it.
    let err = fetch_patch(&c, "ns", "gone").await.unwrap_err().to_string();
    assert!(err.contains("gone-log") && err.contains("does not exist"), "{err}");
}
