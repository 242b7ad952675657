//! Verification (issue 19): the repository's own checks run on the agent's committed tree by
//! the operator, in a pod of their own, and their outcome recorded by trusted code
//! (docs/verification.md).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// `spec.verify`: the checks that judge the run's change.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct VerifySpec {
    /// The program and its arguments (no shell; e.g. `["pytest", "-q"]`, or `["sh", "-c",
    /// "make test"]` to use one), run in the repository's work tree (`spec.repo.workdir`)
    /// with the agent's image. Exit 0: `Passed`. 1 to 32 entries.
    #[schemars(length(min = 1, max = 32))]
    pub command: Vec<String>,
    /// How long the checks may take (Go duration, 1s to 6h; default `10m`); past it the
    /// result is `Error` (reason `VerificationTimedOut`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1s') && duration(self) <= duration('6h')").message("verify.timeout must be a duration between 1s and 6h"))]
    pub timeout: Option<String>,
    /// Files the agent must not change (shell-style globs over repository paths, `**` for any
    /// depth, e.g. `tests/**`, `conftest.py`): a change to one fails verification with reason
    /// `ProtectedPathChanged` before any check runs. Protect what configures the checks too
    /// (`pytest.ini`, `Makefile`, …): the checks run the agent's code. At most 64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub protected_paths: Vec<String>,
    /// When `true`, a run whose verification does not pass ends `Failed` with reason
    /// `VerificationFailed`, and nothing is pushed (the pod's gateway holds the push until
    /// the checks passed). When `false`, the result is recorded and the run ends as the
    /// agent's work did.
    #[serde(default)]
    pub required: bool,
}

/// How verification came out.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerificationResult {
    /// The checks are running (or about to).
    Running,
    /// The checks exited 0 and no protected path changed.
    Passed,
    /// The checks exited non-zero, or a protected path changed.
    Failed,
    /// The checks could not run to an end (the tree could not be prepared, the pod failed,
    /// the timeout passed).
    Error,
}

/// `status.verification`, written by the operator only.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VerificationStatus {
    /// `Running`, `Passed`, `Failed` or `Error`.
    pub result: VerificationResult,
    /// Why, in CamelCase: `Passed`, `ChecksFailed`, `ProtectedPathChanged`,
    /// `VerificationTimedOut`, `PatchTooLarge`, `PatchChanged`, `PatchDidNotApply`,
    /// `VerificationPodFailed`.
    #[serde(default)]
    pub reason: String,
    /// For people.
    #[serde(default)]
    pub message: String,
    /// The attempt whose change was verified.
    pub attempt: u32,
    /// The commit the run started from (the gateway's fact): the checks run on it with the
    /// run's patch applied.
    #[serde(default)]
    pub base_commit: String,
    /// The commit whose change was verified (the gateway's reviewed commit of a held push).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The verified change's size, `<files> files, +<insertions>/-<deletions>` (the gateway's
    /// facts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diffstat: Option<String>,
    /// Lowercase hex SHA-256 of the gzip patch applied (the gateway's): the verification pod
    /// refuses a patch file with another digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch_sha256: Option<String>,
    /// The verification pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_name: Option<String>,
    /// Exit code of the checks (the kubelet's report of the `verify` container).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The test runner's closing line where its format is known, e.g. `41 passed, 2 failed`
    /// (pytest, cargo test, go test, Jest). Printed by the checks, i.e. by the agent's code:
    /// informative only; the result comes from the exit code and the protected paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Protected files the patch changed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protected_paths_changed: Vec<String>,
    /// When the checks started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// How long they ran, whole seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<i64>,
    /// ConfigMap (owned by the run) holding the checks' output: key `verify.log` (the last
    /// 256 KiB), kept after the pod is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_ref: Option<String>,
}
