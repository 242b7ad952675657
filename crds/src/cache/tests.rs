//! Each slimming function drops exactly what it says, and keeps what the reconciles read.
use super::*;
use serde_json::json;

/// A run as `kubectl apply` leaves it after the operator ran it: last-applied annotation, the
/// operator's own annotation, labels, three managers' managedFields, an owner, a finalizer and
/// a status.
fn applied_run() -> AgentRun {
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {
            "name": "r", "namespace": "ns", "uid": "u", "generation": 1, "resourceVersion": "7",
            "labels": {"paddock.dev/set": "s", "kueue.x-k8s.io/queue-name": "q"},
            "annotations": {
                LAST_APPLIED: "{\"spec\":{\"prompt\":\"fix the bug\"}}",
                "paddock.dev/issue-url": "https://forge/o/r/issues/1",
            },
            "finalizers": ["paddock.dev/evidence"],
            "ownerReferences": [{"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRunSet", "name": "s", "uid": "su", "controller": true}],
            "managedFields": [
                {"manager": "kubectl-client-side-apply", "operation": "Update", "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {}}},
                {"manager": "paddock.dev/agentrun", "operation": "Apply", "subresource": "status", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}},
                {"manager": "paddock.dev/follow", "operation": "Apply", "subresource": "status", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}},
            ],
        },
        "spec": {"repo": {"url": "https://forge/o/r.git"}, "agent": {"name": "shell"}, "prompt": "fix the bug",
                 "priority": 3, "output": {"push": true}},
        "status": {"phase": "Succeeded", "podName": "r-1", "attempt": 1, "observedGeneration": 1,
                   "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded", "message": "",
                                   "lastTransitionTime": "2027-01-15T08:00:00Z"}]},
    }))
    .unwrap()
}

#[test]
fn a_cached_run_has_no_managed_fields_last_applied_or_prompt_and_all_else() {
    let full = applied_run();
    let mut run = full.clone();
    slim_agent_run(&mut run);
    assert!(run.metadata.managed_fields.is_none());
    assert_eq!(run.spec.prompt, None);
    assert!(prompt_stripped(&run), "a cached copy is told from the object");
    assert!(!prompt_stripped(&full));
    let annotations = run.metadata.annotations.clone().unwrap();
    assert_eq!(
        annotations.keys().collect::<Vec<_>>(),
        ["paddock.dev/issue-url"],
        "only kubectl's copy goes"
    );
    // Everything else is as it was.
    let mut expected = full;
    expected.metadata.managed_fields = None;
    expected.metadata.annotations = Some(annotations);
    expected.spec.prompt = None;
    assert_eq!(
        serde_json::to_value(&run).unwrap(),
        serde_json::to_value(&expected).unwrap()
    );
    assert_eq!(run.status.unwrap().pod_name.as_deref(), Some("r-1"));
}

#[test]
fn a_run_from_a_config_map_is_not_taken_for_a_stripped_one() {
    let mut run = applied_run();
    run.spec.prompt = None;
    run.spec.prompt_from = Some(crate::ConfigMapKeyRef {
        name: "cm".into(),
        key: "task".into(),
    });
    slim_agent_run(&mut run);
    assert!(!prompt_stripped(&run));
    assert_eq!(run.spec.prompt_from.unwrap().key, "task");
}

#[test]
fn metadata_without_the_last_applied_copy_has_no_empty_annotations() {
    let mut meta = ObjectMeta {
        annotations: Some([(LAST_APPLIED.to_string(), "{}".to_string())].into()),
        ..Default::default()
    };
    slim_meta(&mut meta);
    assert_eq!(meta.annotations, None);
}

#[test]
fn the_pod_cache_keeps_metadata_and_status_only() {
    let mut pod: Pod = serde_json::from_value(json!({
        "metadata": {
            "name": "r-1",
            "labels": {"paddock.dev/run": "r", "paddock.dev/attempt": "1"},
            "annotations": {crate::ANNOTATION_CLAIM: "e30=", "decision.paddock.dev/push": "v",
                            crate::verdict::ANNOTATION_CLAIM_SIGNATURE: "c2ln"},
            "ownerReferences": [{"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "name": "r", "uid": "u"}],
            "managedFields": [{"manager": "paddock.dev/agentrun", "operation": "Apply"}],
        },
        "spec": {"containers": [{"name": "agent", "image": "i"}]},
        "status": {"phase": "Failed", "reason": "DeadlineExceeded", "message": "m", "startTime": "2027-01-15T08:00:00Z",
            "hostIP": "10.0.0.5", "podIP": "10.244.0.57", "qosClass": "Burstable",
            "conditions": [{"type": "Ready", "status": "False"}],
            "initContainerStatuses": [{"name": "gateway", "image": "runner:dev", "imageID": "runner@sha256:00", "ready": false,
                "restartCount": 0, "containerID": "containerd://01",
                "state": {"terminated": {"exitCode": 0, "message": "facts", "containerID": "containerd://01"}}}],
            "containerStatuses": [{"name": "agent", "image": "runner:dev", "imageID": "runner@sha256:00", "ready": false,
                "restartCount": 1, "started": false, "containerID": "containerd://02",
                "volumeMounts": [{"name": "workspace", "mountPath": "/workspace"}],
                "lastState": {"terminated": {"exitCode": 2}},
                "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": "{\"outcome\":\"Failed\"}",
                    "finishedAt": "2027-01-15T08:01:00Z", "containerID": "containerd://02"}}}]},
    }))
    .unwrap();
    slim_pod(&mut pod);
    let st = pod.status.clone().unwrap();
    assert_eq!(
        serde_json::to_value(&st).unwrap(),
        json!({"phase": "Failed", "reason": "DeadlineExceeded", "message": "m", "startTime": "2027-01-15T08:00:00Z",
            "initContainerStatuses": [{"name": "gateway", "image": "", "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "message": "facts"}}}],
            "containerStatuses": [{"name": "agent", "image": "", "imageID": "", "ready": false, "restartCount": 1,
                "started": false,
                "state": {"terminated": {"exitCode": 1, "reason": "Error", "message": "{\"outcome\":\"Failed\"}",
                    "finishedAt": "2027-01-15T08:01:00Z"}}}]}),
        "what the reconciles read of the status, and nothing else"
    );
    assert!(pod.spec.is_none());
    assert!(pod.metadata.managed_fields.is_none());
    let annotations = pod.metadata.annotations.clone().unwrap();
    assert_eq!(
        annotations.keys().collect::<Vec<_>>(),
        ["decision.paddock.dev/push", crate::verdict::ANNOTATION_CLAIM_SIGNATURE]
    );
    assert_eq!(pod.metadata.labels.unwrap()["paddock.dev/attempt"], "1");
    assert_eq!(pod.metadata.owner_references.unwrap()[0].uid, "u");
}

#[test]
fn other_kinds_keep_spec_and_status() {
    let mut gate: crate::ApprovalGate = serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "ApprovalGate",
        "metadata": {"name": "g", "namespace": "ns", "labels": {"paddock.dev/run": "r"},
                     "annotations": {LAST_APPLIED: "{}", "note": "n"},
                     "managedFields": [{"manager": "kubectl", "operation": "Update"}]},
        "spec": {"runRef": {"name": "r", "uid": "u"}, "stage": "BeforeStart", "request": {"summary": "start?"},
                 "approvers": {"users": ["alice"]}, "quorum": 1,
                 "decisions": [{"approver": "alice", "decision": "Approve"}]},
        "status": {"state": "Approved"},
    }))
    .unwrap();
    let full = gate.clone();
    slim_object(&mut gate);
    assert!(gate.metadata.managed_fields.is_none());
    assert_eq!(gate.metadata.annotations.as_ref().unwrap().len(), 1);
    assert_eq!((&gate.spec, &gate.status), (&full.spec, &full.status));
    assert_eq!(gate.metadata.labels, full.metadata.labels);
}

#[test]
fn a_workload_keeps_its_metadata_only() {
    let mut wl: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kueue.x-k8s.io/v1beta1", "kind": "Workload",
        "metadata": {"name": "w", "namespace": "ns", "resourceVersion": "9", "finalizers": ["kueue.x-k8s.io/resource-in-use"],
                     "deletionTimestamp": "2027-01-15T08:00:00Z",
                     "managedFields": [{"manager": "kueue", "operation": "Update"}]},
        "spec": {"podSets": [{"name": "main", "count": 1}]},
        "status": {"conditions": []},
    }))
    .unwrap();
    slim_to_metadata(&mut wl);
    assert_eq!(wl.data, serde_json::Value::Null);
    assert!(wl.metadata.managed_fields.is_none());
    assert_eq!(wl.metadata.resource_version.as_deref(), Some("9"));
    assert!(wl.metadata.deletion_timestamp.is_some());
    assert_eq!(wl.metadata.finalizers.unwrap().len(), 1);
}
