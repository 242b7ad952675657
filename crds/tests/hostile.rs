//! Hostile and malformed AgentRun specs (issue 9): each one is refused at admission with a
//! clear message, one case per input.
//!
//! Two layers of the CRD schema refuse input, as the API server applies them:
//! - CEL rules (`x-kubernetes-validations`): evaluated here with kube's client-side CEL
//!   validator, as in `crds.rs`, against the generated schema — the messages asserted are the
//!   ones users see.
//! - Structural bounds (`maxLength`, `minimum`/`maximum`, `minItems`/`maxItems`, `enum`): the
//!   CEL validator does not evaluate them, so [`structural`] below walks the same generated
//!   schema with the apiserver's semantics (string lengths in characters, as
//!   `utf8.RuneCountInString`) and reports apiserver-style messages. The e2e suite sends the
//!   same manifests to a real API server.
//!
//! What the CRD cannot (and need not) express: references to another namespace's objects.
//! Every reference in the spec (`runnerPoolRef`, `repo.credentialsSecretRef`, `promptFrom`,
//! `agent.env[].valueFrom.secretKeyRef`) is a local reference by design: the schema has no
//! `namespace` field under any of them, so a run cannot name another namespace's objects
//! ([`references_cannot_name_another_namespace`]); with unknown fields pruned by the API
//! server, a `namespace` written there is dropped, not honoured.

use kube::core::cel::Validator;
mod common;
use common::schema_of;
use paddock_crds::AgentRun;
use serde_json::{json, Value};

fn schema() -> Value {
    schema_of::<AgentRun>()
}

fn run_named(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": name, "namespace": "ns"}, "spec": spec})
}

fn run(spec: Value) -> Value {
    run_named("r1", spec)
}

fn base_spec() -> Value {
    json!({"repo": {"url": "https://example.com/x.git"}, "agent": {"name": "claude-code"}, "prompt": "do it", "cancel": false})
}

/// Structural violations of `value` against `schema` at `path`, worded like the apiserver's.
fn structural(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            out.push(format!(
                "{path}: Unsupported value: {value}: supported values: {allowed:?}"
            ));
        }
    }
    match value {
        Value::String(s) => {
            let n = s.chars().count() as u64;
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
                if n > max {
                    out.push(format!("{path}: Too long: may not be more than {max} bytes"));
                }
            }
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
                if n < min {
                    out.push(format!("{path}: Invalid value: should be at least {min} chars long"));
                }
            }
        }
        Value::Number(x) => {
            let x = x.as_f64().unwrap();
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
                if x > max {
                    out.push(format!("{path}: Invalid value: should be less than or equal to {max}"));
                }
            }
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
                if x < min {
                    out.push(format!(
                        "{path}: Invalid value: should be greater than or equal to {min}"
                    ));
                }
            }
        }
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
                if n > max {
                    out.push(format!("{path}: Too many: {n}: must have at most {max} items"));
                }
            }
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
                if n < min {
                    out.push(format!("{path}: Invalid value: should have at least {min} items"));
                }
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    structural(item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        Value::Object(fields) => {
            let props = schema.get("properties").and_then(Value::as_object);
            for (k, v) in fields {
                if let Some(p) = props.and_then(|p| p.get(k)) {
                    structural(p, v, &format!("{path}.{k}"), out);
                }
            }
        }
        _ => {}
    }
}

/// Every refusal of `obj` (an update when `old` is given): CEL rules and structural bounds.
fn refusals(obj: &Value, old: Option<&Value>) -> String {
    let schema = schema();
    let mut out = Vec::new();
    if let Err(e) = Validator::new().validate(&schema, obj, old) {
        out.push(e.to_string());
    }
    structural(&schema, obj, "", &mut out);
    out.join("; ")
}

type Edit = Box<dyn Fn(&mut Value)>;

fn set(path: &'static [&'static str], v: Value) -> Edit {
    Box::new(move |s: &mut Value| {
        let mut at = s;
        for p in &path[..path.len() - 1] {
            if at.get(*p).is_none() {
                at[*p] = json!({});
            }
            at = &mut at[*p];
        }
        at[path[path.len() - 1]] = v.clone();
    })
}

/// Asserts that each edit of the base spec is refused with a message containing `want`, and
/// that the base spec itself is accepted (so the refusal is the edit's doing).
fn assert_refused(cases: Vec<(&str, Edit, &str)>) {
    assert_eq!(refusals(&run(base_spec()), None), "", "the base spec must be accepted");
    for (name, edit, want) in cases {
        let mut spec = base_spec();
        edit(&mut spec);
        let errs = refusals(&run(spec), None);
        assert!(
            errs.contains(want),
            "{name}: expected a refusal containing {want:?}, got {errs:?}"
        );
    }
}

fn assert_accepted(cases: Vec<(&str, Edit)>) {
    for (name, edit) in cases {
        let mut spec = base_spec();
        edit(&mut spec);
        assert_eq!(refusals(&run(spec), None), "", "{name} must be accepted");
    }
}

const BRANCH_MSG: &str = "output.branch must be a valid git branch name";

#[test]
fn option_like_and_escaping_branch_names_are_refused() {
    let mut cases: Vec<(&str, Edit, &str)> = Vec::new();
    for (name, b) in [
        ("-f", "-f"),
        ("--force", "--force"),
        ("../x", "../x"),
        ("a..b", "a..b"),
        ("refs/../heads", "refs/../heads"),
        ("x.lock", "x.lock"),
        ("/abs", "/abs"),
        ("trailing slash", "x/"),
        ("space", "a b"),
        ("shell metacharacters", "x;rm -rf ~"),
        ("command substitution", "$(touch /tmp/p)"),
        ("newline", "a\nb"),
        // Issue 17: admitted before, then failed late as "step clone failed".
        ("full ref", "refs/heads/main"),
        ("HEAD", "HEAD"),
        ("double slash", "a//b"),
        ("hidden component", "a/.b"),
        ("leading dot", ".x"),
        ("trailing dot", "x."),
    ] {
        cases.push((name, set(&["output", "branch"], json!(b)), BRANCH_MSG));
    }
    cases.push((
        "overlong branch",
        set(&["output", "branch"], json!("b".repeat(201))),
        "Too long",
    ));
    assert_refused(cases);
    assert_accepted(vec![
        ("plain branch", set(&["output", "branch"], json!("paddock/fix-1.2_x"))),
        ("dot inside", set(&["output", "branch"], json!("v1.2/x.locked"))),
    ]);
}

const REV_MSG: &str = "repo.revision must be a branch, tag or commit";

#[test]
fn option_like_and_range_revisions_are_refused() {
    let mut cases: Vec<(&str, Edit, &str)> = Vec::new();
    for r in [
        "--upload-pack=x",
        "-x",
        "a..b",
        "../x",
        "main; rm -rf ~",
        "$(id)",
        "a b",
        "x\n-y",
    ] {
        cases.push((r, set(&["repo", "revision"], json!(r)), REV_MSG));
    }
    cases.push((
        "overlong revision",
        set(&["repo", "revision"], json!("a".repeat(256))),
        "Too long",
    ));
    assert_refused(cases);
    assert_accepted(vec![
        ("branch", set(&["repo", "revision"], json!("release/1.x"))),
        (
            "sha",
            set(&["repo", "revision"], json!("0123456789abcdef0123456789abcdef01234567")),
        ),
        ("ancestry", set(&["repo", "revision"], json!("main~2"))),
    ]);
}

const URL_MSG: &str = "repo.url must be an https://, http://, ssh://, git:// or file:// URL";

#[test]
fn hostile_repo_urls_are_refused() {
    let mut cases: Vec<(&str, Edit, &str)> = Vec::new();
    for u in [
        "ext::sh -c x",
        "ext::sh -c touch% /tmp/pwned",
        "--upload-pack=touch /tmp/x",
        "-u x",
        "fd::3",
        "fd::3,4",
        "/etc/passwd",
        "../other-repo",
        "git@github.com:a/b.git",
        "https://example.com/x.git --upload-pack=y",
        "https://example.com/x.git\n--upload-pack=y",
        "https://example.com/x.git\t-u",
        "https://example.com/\u{0}x",
        "https://example.com/\u{7f}x",
        "",
        "HTTPS://EXAMPLE.COM/x",
    ] {
        cases.push((u, set(&["repo", "url"], json!(u)), URL_MSG));
    }
    cases.push((
        "overlong url",
        set(&["repo", "url"], json!(format!("https://e.com/{}", "a".repeat(2048)))),
        "Too long",
    ));
    assert_refused(cases);
    // The documented policy (RepoSpec.url): file:// URLs are allowed — the clone runs in the
    // pod, so file:///etc names the pod's own filesystem, not the node's, and the runner's
    // clone then fails on a non-repository. scp-like `git@host:path` URLs are not accepted:
    // ssh users write ssh://.
    assert_accepted(vec![
        ("file url", set(&["repo", "url"], json!("file:///etc"))),
        ("ssh url", set(&["repo", "url"], json!("ssh://git@example.com/a/b.git"))),
        ("git url", set(&["repo", "url"], json!("git://10.244.0.1/repo"))),
        ("http url", set(&["repo", "url"], json!("http://example.com/x.git"))),
        (
            "non-ASCII path",
            set(&["repo", "url"], json!("https://example.com/dépôt.git")),
        ),
    ]);
}

#[test]
fn oversize_prompt_is_refused() {
    // 64 KiB is the bound; the apiserver counts characters.
    assert_refused(vec![
        (
            "64 KiB + 1",
            set(&["prompt"], json!("a".repeat(65537))),
            "spec.prompt: Too long",
        ),
        (
            "1 MiB",
            set(&["prompt"], json!("a".repeat(1 << 20))),
            "spec.prompt: Too long",
        ),
        (
            "64 KiB + 1 multibyte chars",
            set(&["prompt"], json!("é".repeat(65537))),
            "spec.prompt: Too long",
        ),
        (
            "empty promptFrom name",
            set(&["promptFrom"], json!({"name": "", "key": "k"})),
            "exactly one",
        ),
    ]);
    assert_accepted(vec![("exactly 64 KiB", set(&["prompt"], json!("a".repeat(65536))))]);
}

#[test]
fn unknown_agent_and_oversize_agent_fields_are_refused() {
    let mut cases: Vec<(&str, Edit, &str)> = Vec::new();
    for a in ["claude", "bash", "sh -c x", "Claude-Code", "", "../shell"] {
        cases.push((
            a,
            set(&["agent", "name"], json!(a)),
            "spec.agent.name: Unsupported value",
        ));
    }
    cases.push((
        "65 args",
        set(&["agent", "args"], json!(vec!["x"; 65])),
        "spec.agent.args: Too many",
    ));
    cases.push((
        "overlong model",
        set(&["agent", "model"], json!("m".repeat(254))),
        "spec.agent.model: Too long",
    ));
    cases.push((
        "65 env vars",
        set(
            &["agent", "env"],
            json!((0..65)
                .map(|i| json!({"name": format!("V{i}"), "value": "x"}))
                .collect::<Vec<_>>()),
        ),
        "spec.agent.env: Too many",
    ));
    for name in ["GITHUB_TOKEN", "my_secret", "DB_PASSWORD", "openai_api_key"] {
        cases.push((
            name,
            set(&["agent", "env"], json!([{"name": name, "value": "literal"}])),
            "credentials in env must use valueFrom.secretKeyRef",
        ));
    }
    assert_refused(cases);
}

#[test]
fn absurd_budgets_and_timeouts_are_refused() {
    let msg = "budget.timeout must be a duration between 1s and 24h";
    let mut cases: Vec<(&str, Edit, &str)> = Vec::new();
    for t in ["0s", "-1s", "24h1s", "25h", "1000000h"] {
        cases.push((t, set(&["budget", "timeout"], json!(t)), msg));
    }
    // Not a duration at all: refused, but by the CEL runtime's parse error ("rule evaluation
    // error: … duration …"), not by the rule's own message.
    for t in ["forever", "", "1d"] {
        cases.push((t, set(&["budget", "timeout"], json!(t)), "spec.budget.timeout"));
    }
    cases.push((
        "maxTurns 0",
        set(&["budget", "maxTurns"], json!(0)),
        "spec.budget.maxTurns: Invalid value",
    ));
    cases.push((
        "maxTurns 100000",
        set(&["budget", "maxTurns"], json!(100000)),
        "spec.budget.maxTurns: Invalid value",
    ));
    cases.push((
        "maxTurns -1",
        set(&["budget", "maxTurns"], json!(-1)),
        "spec.budget.maxTurns: Invalid value",
    ));
    assert_refused(cases);
    assert_accepted(vec![
        ("1s", set(&["budget", "timeout"], json!("1s"))),
        ("24h", set(&["budget", "timeout"], json!("24h"))),
        ("maxTurns 1000", set(&["budget", "maxTurns"], json!(1000))),
    ]);
}

#[test]
fn absurd_retries_are_refused() {
    let msg = "retry.backoff must be a duration between 1s and 10m";
    assert_refused(vec![
        (
            "limit 6",
            set(&["retry", "limit"], json!(6)),
            "spec.retry.limit: Invalid value",
        ),
        (
            "limit -1",
            set(&["retry", "limit"], json!(-1)),
            "spec.retry.limit: Invalid value",
        ),
        ("backoff 0s", set(&["retry", "backoff"], json!("0s")), msg),
        ("backoff 11m", set(&["retry", "backoff"], json!("11m")), msg),
        ("backoff -5s", set(&["retry", "backoff"], json!("-5s")), msg),
    ]);
    assert_accepted(vec![(
        "limit 5, backoff 10m",
        set(&["retry"], json!({"limit": 5, "backoff": "10m"})),
    )]);
}

fn rules(n: usize) -> Value {
    json!((0..n).map(|i| json!({"tool": format!("T{i}")})).collect::<Vec<_>>())
}

#[test]
fn absurd_approvals_are_refused() {
    let gate_msg = "timeout must be a duration between 1s and 720h";
    assert_refused(vec![
        (
            "toolUse with 0 rules",
            set(&["approvals", "toolUse"], json!({"rules": rules(0)})),
            "spec.approvals.toolUse.rules: Invalid value: should have at least 1 items",
        ),
        (
            "toolUse with 33 rules",
            set(&["approvals", "toolUse"], json!({"rules": rules(33)})),
            "spec.approvals.toolUse.rules: Too many: 33",
        ),
        (
            "empty tool name",
            set(&["approvals", "toolUse"], json!({"rules": [{"tool": ""}]})),
            "spec.approvals.toolUse.rules[0].tool",
        ),
        (
            "gate timeout 721h",
            set(&["approvals", "beforeStart"], json!({"timeout": "721h"})),
            gate_msg,
        ),
        (
            "gate timeout 0s",
            set(&["approvals", "beforeStart"], json!({"timeout": "0s"})),
            gate_msg,
        ),
        (
            "toolUse gate timeout 721h",
            set(&["approvals", "toolUse"], json!({"rules": rules(1), "timeout": "721h"})),
            gate_msg,
        ),
        (
            "quorum 0",
            set(&["approvals", "beforeStart"], json!({"quorum": 0})),
            "spec.approvals.beforeStart.quorum: Invalid value",
        ),
        (
            "quorum 11",
            set(&["approvals", "beforeStart"], json!({"quorum": 11})),
            "spec.approvals.beforeStart.quorum: Invalid value",
        ),
    ]);
    assert_accepted(vec![
        ("32 rules", set(&["approvals", "toolUse"], json!({"rules": rules(32)}))),
        ("720h", set(&["approvals", "beforeStart"], json!({"timeout": "720h"}))),
    ]);
}

#[test]
fn spec_edits_after_creation_are_refused_except_cancel() {
    let old = run(base_spec());
    let immutable = "spec is immutable after creation, except spec.cancel";
    let edits: Vec<(&str, Edit)> = vec![
        ("prompt", set(&["prompt"], json!("rm -rf /"))),
        (
            "repo url",
            set(&["repo", "url"], json!("https://evil.example.com/x.git")),
        ),
        ("repo revision", set(&["repo", "revision"], json!("other"))),
        (
            "credentials",
            set(&["repo", "credentialsSecretRef"], json!({"name": "other"})),
        ),
        ("agent", set(&["agent", "name"], json!("shell"))),
        (
            "agent env",
            set(&["agent", "env"], json!([{"name": "A", "value": "b"}])),
        ),
        ("added approvals", set(&["approvals", "beforeStart"], json!({}))),
        ("added budget", set(&["budget", "timeout"], json!("1h"))),
        ("runner pool", set(&["runnerPoolRef"], json!({"name": "other"}))),
        ("output", set(&["output", "branch"], json!("main"))),
        ("retry", set(&["retry", "limit"], json!(5))),
    ];
    for (name, edit) in edits {
        let mut spec = base_spec();
        edit(&mut spec);
        let errs = refusals(&run(spec), Some(&old));
        assert!(errs.contains(immutable), "{name}: expected {immutable:?}, got {errs:?}");
    }
    // Removing a field is an edit too.
    let mut with_budget = base_spec();
    with_budget["budget"] = json!({"timeout": "1h"});
    let errs = refusals(&run(base_spec()), Some(&run(with_budget)));
    assert!(errs.contains(immutable), "removed budget: {errs:?}");
    // Swapping prompt for promptFrom.
    let mut from = base_spec();
    from.as_object_mut().unwrap().remove("prompt");
    from["promptFrom"] = json!({"name": "c", "key": "k"});
    let errs = refusals(&run(from), Some(&old));
    assert!(errs.contains(immutable), "prompt -> promptFrom: {errs:?}");

    // Setting cancel is allowed; unsetting it is not.
    let mut cancelled = base_spec();
    cancelled["cancel"] = json!(true);
    assert_eq!(refusals(&run(cancelled.clone()), Some(&old)), "");
    let errs = refusals(&run(base_spec()), Some(&run(cancelled.clone())));
    assert!(errs.contains("spec.cancel cannot be unset once set"), "{errs:?}");
    // Cancel plus a smuggled edit is still refused.
    let mut smuggled = cancelled;
    smuggled["prompt"] = json!("other");
    let errs = refusals(&run(smuggled), Some(&old));
    assert!(errs.contains(immutable), "cancel + prompt edit: {errs:?}");
}

#[test]
fn long_names_are_refused() {
    let msg = "AgentRun names are at most 52 characters";
    let ok = "a".repeat(52);
    assert_eq!(refusals(&run_named(&ok, base_spec()), None), "");
    for n in [53, 63, 253] {
        let errs = refusals(&run_named(&"a".repeat(n), base_spec()), None);
        assert!(errs.contains(msg), "{n} chars: {errs:?}");
    }
}

/// Every object reference under `at` in the schema: objects whose properties include `name`
/// (and, for key refs, `key`). Returns (path, property names).
fn refs(schema: &Value, path: &str, out: &mut Vec<(String, Vec<String>)>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        let is_ref = path.ends_with("Ref") || path.ends_with("promptFrom");
        if is_ref {
            out.push((path.to_string(), props.keys().cloned().collect()));
        }
        for (k, v) in props {
            refs(v, &format!("{path}.{k}"), out);
        }
    }
    if let Some(items) = schema.get("items") {
        refs(items, &format!("{path}[]"), out);
    }
}

#[test]
fn references_cannot_name_another_namespace() {
    let schema = schema();
    let mut found = Vec::new();
    refs(&schema["properties"]["spec"], "spec", &mut found);
    let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    for want in [
        "spec.runnerPoolRef",
        "spec.repo.credentialsSecretRef",
        "spec.promptFrom",
        "spec.agent.env[].valueFrom.secretKeyRef",
        "spec.agent.env[].valueFrom.configMapKeyRef",
    ] {
        assert!(paths.contains(&want), "{want} not found among {paths:?}");
    }
    for (path, props) in &found {
        // fieldRef/resourceFieldRef name the pod's own fields, not other objects.
        if !path.ends_with("fieldRef") && !path.ends_with("FieldRef") {
            assert!(
                props.iter().all(|p| p == "name" || p == "key" || p == "optional"),
                "{path} has fields beyond name/key/optional: {props:?}"
            );
        }
        assert!(!props.iter().any(|p| p == "namespace"), "{path} can name a namespace");
    }
}

const NAME_MSG: &str = "name must be a lowercase RFC 1123 subdomain";

/// Issue 17: a `runnerPoolRef.name` with `/` was admitted, and the run then got no status at
/// all (the operator's GET of `pools/<name>` pointed elsewhere and got 403 every 5 s).
#[test]
fn reference_names_that_are_not_object_names_are_refused() {
    let mut cases: Vec<(&str, Edit, &str)> = Vec::new();
    for (name, n) in [
        ("slash", "a/b"),
        ("path escape", "../pods"),
        ("upper case", "Default"),
        ("leading dash", "-x"),
        ("trailing dot", "x."),
        ("space", "a b"),
    ] {
        cases.push((name, set(&["runnerPoolRef", "name"], json!(n)), NAME_MSG));
        cases.push((name, set(&["repo", "credentialsSecretRef", "name"], json!(n)), NAME_MSG));
    }
    assert_refused(cases);
    assert_accepted(vec![
        ("plain", set(&["runnerPoolRef", "name"], json!("default"))),
        ("dotted", set(&["runnerPoolRef", "name"], json!("team-a.gpu-1"))),
    ]);
}
