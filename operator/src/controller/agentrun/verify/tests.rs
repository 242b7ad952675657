//! Tests of [`super`].
use super::*;

const PATCH: &str = "diff --git a/src/calc.py b/src/calc.py\n--- a/src/calc.py\n+++ b/src/calc.py\n@@ -1 +1 @@\n-x\n+y\n\
diff --git a/tests/test_calc.py b/tests/test_calc.py\n--- a/tests/test_calc.py\n+++ b/tests/test_calc.py\n@@ -1 +1 @@\n-a\n+b\n\
diff --git a/new.txt b/new.txt\nnew file mode 100644\n--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+n\n\
diff --git a/old.sh b/renamed.sh\nsimilarity index 100%\nrename from old.sh\nrename to renamed.sh\n\
diff --git a/sub/conftest.py b/sub/conftest.py\nold mode 100644\nnew mode 100755\n";

#[test]
fn the_files_of_a_patch_are_read_from_every_kind_of_hunk() {
    assert_eq!(
        changed_files(PATCH),
        vec![
            "src/calc.py",
            "tests/test_calc.py",
            "new.txt",
            "old.sh",
            "renamed.sh",
            "sub/conftest.py"
        ]
    );
}

#[test]
fn protected_globs_catch_test_edits_renames_and_mode_changes() {
    let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(protected_changes(PATCH, &g(&["tests/**"])), vec!["tests/test_calc.py"]);
    assert_eq!(protected_changes(PATCH, &g(&["conftest.py"])), vec!["sub/conftest.py"]);
    assert_eq!(protected_changes(PATCH, &g(&["*.sh"])), vec!["old.sh", "renamed.sh"]);
    assert!(protected_changes(PATCH, &g(&["docs/**", "*.md"])).is_empty());
    // A path git quoted cannot be matched reliably: it counts as protected.
    let quoted = "diff --git \"a/t\\303\\251st.py\" \"b/t\\303\\251st.py\"\n--- \"a/t\\303\\251st.py\"\n";
    assert_eq!(protected_changes(quoted, &g(&["tests/**"])).len(), 1);
    assert!(protected_changes(quoted, &[]).is_empty());
    // `*` does not cross directories.
    assert!(protected_changes(PATCH, &g(&["src*"])).is_empty());
    assert_eq!(protected_changes(PATCH, &g(&["src/*.py"])), vec!["src/calc.py"]);
}

#[test]
fn closing_lines_of_known_test_runners_become_the_summary() {
    let pytest = "....F\n=================== 41 passed, 2 failed in 0.12s ===================\n";
    assert_eq!(summary(pytest).as_deref(), Some("41 passed, 2 failed"));
    let cargo = "test a ... ok\ntest result: FAILED. 12 passed; 1 failed; 0 ignored; 0 measured\n";
    assert_eq!(summary(cargo).as_deref(), Some("12 passed; 1 failed"));
    let jest = "Tests:       2 failed, 41 passed, 43 total\n";
    assert_eq!(summary(jest).as_deref(), Some("2 failed, 41 passed, 43 total"));
    let go = "ok  \texample.com/a\t0.1s\nFAIL\texample.com/b\t0.2s\n";
    assert_eq!(summary(go).as_deref(), Some("1 packages ok, 1 failed"));
    assert_eq!(summary("all good\n"), None);
    // Python's unittest prints "Ran N tests" then a blank line and OK or FAILED (...).
    let unittest = "..F\n======\nFAIL: test_mul\n----\nRan 3 tests in 0.001s\n\nFAILED (failures=1)\n";
    assert_eq!(summary(unittest).as_deref(), Some("2 passed, 1 failed"));
    let ok = "Ran 2 tests in 0.000s\n\nOK\n";
    assert_eq!(summary(ok).as_deref(), Some("2 passed"));
    let mixed = "Ran 5 tests in 0.1s\n\nFAILED (failures=1, errors=2, skipped=1)\n";
    assert_eq!(
        summary(mixed).as_deref(),
        Some("1 passed, 1 failed, 2 errors, 1 skipped")
    );
}

fn run(verify: serde_json::Value, output: serde_json::Value) -> AgentRun {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": "fix", "namespace": "ns", "uid": "u-1"},
        "spec": {"repo": {"url": "https://example.com/r.git", "workdir": "app"},
                 "agent": {"name": "claude-code",
                           "env": [{"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {"name": "k", "key": "k"}}}]},
                 "prompt": "fix it", "verify": verify, "output": output},
    }))
    .unwrap()
}

fn pool() -> paddock_crds::RunnerPool {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "RunnerPool",
        "metadata": {"name": "default", "namespace": "ns"},
        "spec": {"template": {"image": "runner:1"}, "overrides": {"env": true}},
    }))
    .unwrap()
}

#[test]
fn the_verification_pod_runs_the_command_on_base_plus_patch_without_the_agents_secrets_or_network() {
    let r = run(
        serde_json::json!({"command": ["pytest", "-q"], "timeout": "2m"}),
        serde_json::json!({}),
    );
    let mut runner = super::super::build::build_pod(&r, &pool(), 1, "key").unwrap();
    super::super::build::apply_uplink(
        &mut runner,
        &crate::controller::egress::PodUplink {
            proxy: "http://egress:3128".into(),
            token: "tok".into(),
        },
    );
    let facts = paddock_crds::gateway::BranchFacts {
        base: "abc123".into(),
        commit: Some("c0ffee".into()),
        files_changed: 1,
        ..Default::default()
    };
    let inputs = inputs(&facts, Some(b"gz".as_slice()), Some("fix-patch".into()));
    assert_eq!(inputs.refuse, None);
    assert_eq!(
        inputs.patch_sha256.as_deref(),
        Some(paddock_evidence::dsse::sha256_hex(b"gz").as_str())
    );
    let pod = build_pod(&r, runner.clone(), 1, &inputs);
    assert_eq!(pod.metadata.name.as_deref(), Some("fix-1-verify"));
    assert_eq!(pod.metadata.labels.as_ref().unwrap()[LABEL_VERIFY], "true");
    let spec = pod.spec.clone().unwrap();
    assert_eq!(spec.active_deadline_seconds, Some(120 + CLONE_ALLOWANCE_SECS as i64));
    let inits = spec.init_containers.unwrap();
    assert_eq!(
        inits.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        vec!["clone"],
        "no gateway"
    );
    let env = |c: &k8s_openapi::api::core::v1::Container, n: &str| {
        c.env
            .iter()
            .flatten()
            .find(|e| e.name == n)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(env(&inits[0], "PADDOCK_REVISION").as_deref(), Some("abc123"));
    assert_eq!(
        env(&inits[0], "PADDOCK_APPLY_PATCH").as_deref(),
        Some("/etc/paddock/patch/patch.gz")
    );
    assert_eq!(spec.containers.len(), 1);
    let c = &spec.containers[0];
    assert_eq!(c.name, CONTAINER);
    assert_eq!(
        c.command.as_deref(),
        Some(&["pytest".to_string(), "-q".to_string()][..])
    );
    assert_eq!(c.working_dir.as_deref(), Some("/workspace/work/app"));
    let names: Vec<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert_eq!(names, vec!["HOME", "CI"], "no prompt, key, proxy or egress token");
    assert!(c.env.iter().flatten().all(|e| e.value_from.is_none()));
    // The operator accepts only its own spec under that name.
    assert_eq!(spec_mismatch(&pod, &build_pod(&r, runner.clone(), 1, &inputs)), None);
    let mut forged = pod.clone();
    forged.spec.as_mut().unwrap().containers[0].command = Some(vec!["true".into()]);
    assert!(spec_mismatch(&forged, &pod).unwrap().contains("verify container"));
    let mut forged = pod.clone();
    for c in forged.spec.as_mut().unwrap().init_containers.iter_mut().flatten() {
        c.env
            .iter_mut()
            .flatten()
            .filter(|e| e.name == "PADDOCK_APPLY_PATCH_SHA256")
            .for_each(|e| e.value = Some("0".into()));
    }
    assert!(spec_mismatch(&forged, &pod).unwrap().contains("clone container"));
    let mut forged = pod.clone();
    forged.metadata.owner_references = None;
    assert!(spec_mismatch(&forged, &pod).unwrap().contains("owned"));
    assert!(spec
        .volumes
        .unwrap()
        .iter()
        .any(|v| v.config_map.as_ref().is_some_and(|c| c.name == "fix-patch")));
}

#[test]
fn a_held_push_is_approved_only_after_passing_and_rejected_after_failing() {
    use paddock_crds::verdict::{verified_verdict, Signer, Subject};
    let signer = Signer::generate().unwrap();
    let r = run(
        serde_json::json!({"command": ["true"], "required": true}),
        serde_json::json!({"push": true}),
    );
    assert!(holds_push(&r));
    // The pod's gateway holds the push and the runner announces it, as for a BeforePush gate.
    let runner = super::super::build::build_pod(&r, &pool(), 1, "key").unwrap();
    let spec = runner.spec.unwrap();
    for c in spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.name == "gateway")
        .chain(spec.containers.iter())
    {
        assert!(
            c.env
                .iter()
                .flatten()
                .any(|e| e.name == "PADDOCK_PUSH_APPROVAL" && e.value.as_deref() == Some("true")),
            "{} holds the push",
            c.name
        );
    }
    let mut v = started(
        1,
        "base",
        Some("fix-verify-1".into()),
        Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    );
    v.commit = Some("c0ffee".into());
    let subject = Subject {
        namespace: "ns",
        run: "fix",
        run_uid: "u-1",
        attempt: 1,
        id: "push",
        subject: "c0ffee",
    };
    let verdict_of = |v: &VerificationStatus, gate: Option<&str>| {
        let mut wanted = BTreeMap::new();
        if let Some(g) = gate {
            wanted.insert("decision.paddock.dev/push".to_string(), g.to_string());
        }
        super::super::approvals::held_push_verdict(
            &r,
            1,
            Some(v),
            &crate::controller::agentrunset::Selection::NotACandidate,
            &signer,
            &mut wanted,
        );
        wanted.get("decision.paddock.dev/push").cloned()
    };
    // Running: nothing, even when something was there.
    assert_eq!(verdict_of(&v, Some("Approve;ed25519=x")), None);
    v.result = VerificationResult::Failed;
    let rejected = verdict_of(&v, None).unwrap();
    assert_eq!(
        verified_verdict(&signer.public_key_b64(), &subject, &rejected),
        Some("Reject")
    );
    v.result = VerificationResult::Passed;
    let approved = verdict_of(&v, None).unwrap();
    assert_eq!(
        verified_verdict(&signer.public_key_b64(), &subject, &approved),
        Some("Approve")
    );
    // Another attempt's verification says nothing for this one.
    v.attempt = 2;
    assert_eq!(verdict_of(&v, None), None);
    // Not held (verification not required): untouched.
    let free = run(
        serde_json::json!({"command": ["true"]}),
        serde_json::json!({"push": true}),
    );
    assert!(!holds_push(&free));
    // A set's candidate (issue 19): held even without `required`; after a passed (or, not
    // required, failed) verification it waits for its set, and only the winner's push goes on.
    use crate::controller::agentrunset::Selection;
    let mut cand = run(
        serde_json::json!({"command": ["true"]}),
        serde_json::json!({"push": true}),
    );
    cand.metadata.uid = Some("u-1".into());
    cand.metadata.owner_references = Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "paddock.dev/v1alpha1".into(),
        kind: "AgentRunSet".into(),
        name: "set".into(),
        uid: "set-uid".into(),
        controller: Some(true),
        ..Default::default()
    }]);
    assert!(holds_push(&cand));
    let candidate_verdict = |v: &VerificationStatus, sel: Selection| {
        let mut wanted = BTreeMap::new();
        super::super::approvals::held_push_verdict(&cand, 1, Some(v), &sel, &signer, &mut wanted);
        wanted
            .get("decision.paddock.dev/push")
            .and_then(|value| verified_verdict(&signer.public_key_b64(), &subject, value))
            .map(str::to_string)
    };
    v.attempt = 1;
    for result in [VerificationResult::Passed, VerificationResult::Failed] {
        v.result = result;
        assert_eq!(
            candidate_verdict(&v, Selection::Waiting),
            None,
            "{result:?}: waits for the set"
        );
        assert_eq!(
            candidate_verdict(&v, Selection::Winner { commit: None }),
            Some("Approve".into()),
            "{result:?}"
        );
        assert_eq!(
            candidate_verdict(&v, Selection::Loser("b won".into())),
            Some("Reject".into()),
            "{result:?}"
        );
    }
    // The selection names a commit: a different one (a later change) is refused.
    v.result = VerificationResult::Passed;
    let chosen = Selection::Winner {
        commit: Some("c0ffee".into()),
    };
    assert_eq!(candidate_verdict(&v, chosen.clone()), Some("Approve".into()));
    let other = Selection::Winner {
        commit: Some("beef".into()),
    };
    assert_eq!(candidate_verdict(&v, other), Some("Reject".into()));
    v.result = VerificationResult::Running;
    assert_eq!(candidate_verdict(&v, chosen), None, "never before its checks end");
    // Recorded candidacy (status.policy.agentRunSet) outlives the owner reference.
    let mut orphaned = cand.clone();
    let st = paddock_crds::AgentRunStatus {
        policy: Some(
            serde_json::from_value(serde_json::json!({
                "runnerPool": {"name": "p", "uid": "pu", "generation": 1}, "podTemplateHash": "sha256:x", "image": "i",
                "poolSpec": {"template": {"image": "i"}}, "recordedAt": "2027-01-15T08:00:00Z",
                "agentRunSet": {"name": "set", "uid": "set-uid"},
            }))
            .unwrap(),
        ),
        ..Default::default()
    };
    orphaned.status = Some(st);
    orphaned.metadata.owner_references = None;
    assert!(
        holds_push(&orphaned),
        "an owner reference removed later changes nothing"
    );
    let mut recorded_free = orphaned.clone();
    recorded_free
        .status
        .as_mut()
        .unwrap()
        .policy
        .as_mut()
        .unwrap()
        .agent_run_set = None;
    recorded_free.metadata.owner_references = cand.metadata.owner_references.clone();
    assert!(!holds_push(&recorded_free), "nor does one added later");
}

#[test]
fn a_change_whose_patch_was_cut_or_not_stored_is_never_verified() {
    let facts = |truncated: bool| paddock_crds::gateway::BranchFacts {
        base: "b".into(),
        commit: Some("c".into()),
        files_changed: 3,
        patch_bytes: 5 << 20,
        patch_truncated: truncated,
        ..Default::default()
    };
    assert!(inputs(&facts(true), Some(b"gz".as_slice()), Some("p".into()))
        .refuse
        .unwrap()
        .contains("cut"));
    assert!(inputs(&facts(false), None, None).refuse.unwrap().contains("not stored"));
    let ok = inputs(&facts(false), Some(b"gz".as_slice()), Some("p".into()));
    assert_eq!((ok.refuse, ok.patch_cm.as_deref()), (None, Some("p")));
    // Nothing changed: nothing to apply, nothing refused.
    let same = paddock_crds::gateway::BranchFacts {
        base: "b".into(),
        ..Default::default()
    };
    let none = inputs(&same, None, None);
    assert_eq!((none.refuse, none.patch_cm, none.patch_sha256), (None, None, None));
}
