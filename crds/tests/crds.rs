//! The checked-in CRD YAML matches the types, and the CRDs' CEL rules accept and refuse what
//! they should (evaluated client-side with kube's CEL validator; the e2e suite checks the same
//! manifests against a real API server).

use kube::core::cel::Validator;
mod common;
use common::schema_of;
use paddock_crds::{AgentRun, ApprovalGate};
use serde_json::{json, Value};

#[test]
fn generated_yaml_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/generated/crds.yaml");
    let on_disk = std::fs::read_to_string(path).expect("crds/generated/crds.yaml exists");
    let fresh = paddock_crds::crds_yaml().unwrap();
    assert!(
        on_disk == fresh,
        "crds/generated/crds.yaml is stale: run `cargo run -p paddock-crds --bin crdgen -- crds/generated/crds.yaml`"
    );
}

#[test]
fn chart_crds_match_generated() {
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/paddock/crds/crds.yaml");
    if let Ok(in_chart) = std::fs::read_to_string(chart) {
        assert_eq!(
            in_chart,
            paddock_crds::crds_yaml().unwrap(),
            "charts/paddock/crds/crds.yaml is stale: `make crds`"
        );
    } else {
        panic!("charts/paddock/crds/crds.yaml is missing: `make crds`");
    }
}

fn run(spec: Value) -> Value {
    json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "metadata": {"name": "r1", "namespace": "ns"}, "spec": spec})
}

fn base_spec() -> Value {
    json!({"repo": {"url": "https://example.com/x.git"}, "agent": {"name": "claude-code"}, "prompt": "do it", "cancel": false})
}

fn errors(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<String> {
    match Validator::new().validate(schema, obj, old) {
        Ok(()) => vec![],
        Err(e) => vec![e.to_string()],
    }
}

#[test]
fn agentrun_create_rules() {
    let schema = schema_of::<AgentRun>();
    assert_eq!(errors(&schema, &run(base_spec()), None), Vec::<String>::new());
    // In-run approvals where they apply.
    let mut gated = base_spec();
    gated["agent"] = json!({"name": "claude-code"});
    gated["output"] = json!({"push": true});
    gated["approvals"] =
        json!({"beforePush": {}, "toolUse": {"rules": [{"tool": "Bash", "pattern": "git push*"}], "quorum": 2}});
    assert_eq!(errors(&schema, &run(gated), None), Vec::<String>::new());

    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "no prompt",
            Box::new(|s: &mut Value| {
                s.as_object_mut().unwrap().remove("prompt");
            }),
            "exactly one of spec.prompt",
        ),
        (
            "both prompts",
            Box::new(|s: &mut Value| {
                s["promptFrom"] = json!({"name": "c", "key": "k"});
            }),
            "exactly one of spec.prompt",
        ),
        (
            "beforePush without push",
            Box::new(|s: &mut Value| {
                s["approvals"] = json!({"beforePush": {}});
            }),
            "beforePush needs spec.output.push",
        ),
        (
            "toolUse on another agent",
            Box::new(|s: &mut Value| {
                s["agent"] = json!({"name": "codex"});
                s["approvals"] = json!({"toolUse": {"rules": [{"tool": "Bash"}]}});
            }),
            "toolUse is supported for agent claude-code only",
        ),
        (
            "ext url",
            Box::new(|s: &mut Value| {
                s["repo"]["url"] = json!("ext::sh -c touch% /tmp/pwned");
            }),
            "repo.url must be",
        ),
        (
            "option url",
            Box::new(|s: &mut Value| {
                s["repo"]["url"] = json!("--upload-pack=touch /tmp/x");
            }),
            "repo.url must be",
        ),
        (
            "option revision",
            Box::new(|s: &mut Value| {
                s["repo"]["revision"] = json!("-f");
            }),
            "repo.revision",
        ),
        (
            "escaping revision",
            Box::new(|s: &mut Value| {
                s["repo"]["revision"] = json!("../x");
            }),
            "repo.revision",
        ),
        (
            "option branch",
            Box::new(|s: &mut Value| {
                s["output"] = json!({"branch": "--force"});
            }),
            "output.branch",
        ),
        (
            "escaping workdir",
            Box::new(|s: &mut Value| {
                s["repo"]["workdir"] = json!("a/../../etc");
            }),
            "repo.workdir",
        ),
        (
            "literal key",
            Box::new(|s: &mut Value| {
                s["agent"]["env"] = json!([{"name": "ANTHROPIC_API_KEY", "value": "sk-123"}]);
            }),
            "secretKeyRef",
        ),
        (
            "absurd timeout",
            Box::new(|s: &mut Value| {
                s["budget"] = json!({"timeout": "9999h"});
            }),
            "budget.timeout",
        ),
    ];
    for (name, edit, want) in cases {
        let mut spec = base_spec();
        edit(&mut spec);
        let errs = errors(&schema, &run(spec), None).join("; ");
        assert!(
            errs.contains(want),
            "{name}: expected an error containing {want:?}, got {errs:?}"
        );
    }

    let mut ok = base_spec();
    ok["agent"]["env"] = json!([{"name": "ANTHROPIC_BASE_URL", "value": "http://10.0.0.1"},
        {"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]);
    ok["budget"] = json!({"timeout": "30m"});
    assert_eq!(errors(&schema, &run(ok), None), Vec::<String>::new());
}

#[test]
fn agentrun_spec_is_immutable_except_cancel() {
    let schema = schema_of::<AgentRun>();
    let old = run(base_spec());
    let mut cancelled = base_spec();
    cancelled["cancel"] = json!(true);
    assert_eq!(
        errors(&schema, &run(cancelled.clone()), Some(&old)),
        Vec::<String>::new()
    );

    let mut edited = base_spec();
    edited["prompt"] = json!("something else");
    assert!(errors(&schema, &run(edited), Some(&old))
        .join(";")
        .contains("immutable"));

    let mut added = base_spec();
    added["budget"] = json!({"timeout": "1h"});
    assert!(errors(&schema, &run(added), Some(&old)).join(";").contains("immutable"));

    let uncancel = run(base_spec());
    assert!(errors(&schema, &uncancel, Some(&run(cancelled)))
        .join(";")
        .contains("cannot be unset"));
}

#[test]
fn gate_decisions_are_append_only() {
    let schema = schema_of::<ApprovalGate>();
    let gate = |decisions: Value| {
        json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "ApprovalGate", "metadata": {"name": "g", "namespace": "ns"},
            "spec": {"runRef": {"name": "r"}, "stage": "BeforeStart", "request": {"summary": "s"}, "quorum": 1, "approvers": {}, "decisions": decisions}})
    };
    let a = json!({"approver": "alice", "decision": "Approve"});
    let b = json!({"approver": "bob", "decision": "Reject"});
    let old = gate(json!([a.clone()]));
    assert_eq!(
        errors(&schema, &gate(json!([a.clone(), b.clone()])), Some(&old)),
        Vec::<String>::new()
    );
    assert!(errors(&schema, &gate(json!([])), Some(&old))
        .join(";")
        .contains("append-only"));
    assert!(errors(&schema, &gate(json!([b])), Some(&old))
        .join(";")
        .contains("append-only"));
}
