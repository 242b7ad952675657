//! The AgentRun manifests the console creates, built by pure functions: the new-run form's
//! (shown as YAML before it is applied) and a follow-up of an existing run (`resumeFrom`).

use paddock_crds::AgentRun;

/// Why a form does not make a valid manifest; the message is shown next to the form.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FormError {
    /// A required field is empty.
    #[error("{0} is required")]
    Missing(&'static str),
    /// A field has a value the AgentRun type refuses.
    #[error("{field}: {message}")]
    Invalid {
        /// The form field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The new-run form (`/new`), every field as typed; empty means unset.
#[derive(Debug, Clone, Default, serde::Deserialize, PartialEq)]
#[serde(default)]
pub struct NewRunForm {
    /// Namespace to create the run in.
    pub namespace: String,
    /// Run name (a DNS label).
    pub name: String,
    /// `spec.repo.url`.
    pub repo: String,
    /// `spec.repo.revision`.
    pub revision: String,
    /// `spec.agent.name` (`claude-code`, …).
    pub agent: String,
    /// `spec.agent.model`.
    pub model: String,
    /// `spec.prompt`.
    pub prompt: String,
    /// `spec.runnerPoolRef.name`.
    pub pool: String,
    /// `spec.budget.timeout` (a Go duration, e.g. `30m`).
    pub timeout: String,
    /// `spec.budget.maxCostUSD`, a decimal number of US dollars.
    pub max_cost_usd: String,
    /// `spec.output.push` when `"true"`.
    pub push: String,
    /// `spec.approvals.beforeStart` when `"true"`.
    pub before_start: String,
    /// `spec.approvals.beforePush` when `"true"` (also sets `output.push`).
    pub before_push: String,
    /// Approvers of the asked-for gates: user names, comma-separated.
    pub approvers: String,
}

fn set(v: &str) -> Option<String> {
    let t = v.trim();
    (!t.is_empty()).then(|| t.to_string())
}

/// Builds the AgentRun manifest (JSON) of `f`, checked by deserializing it as an [`AgentRun`]
/// (so unknown agents and malformed numbers are refused here, with the field named). The
/// namespace is in `metadata`.
///
/// # Errors
/// [`FormError::Missing`] for an empty name, namespace, repository or prompt;
/// [`FormError::Invalid`] for a value the type refuses.
pub fn build_new_run(f: &NewRunForm) -> Result<serde_json::Value, FormError> {
    let name = set(&f.name).ok_or(FormError::Missing("name"))?;
    let ns = set(&f.namespace).ok_or(FormError::Missing("namespace"))?;
    let repo = set(&f.repo).ok_or(FormError::Missing("repository URL"))?;
    let prompt = set(&f.prompt).ok_or(FormError::Missing("prompt"))?;
    let agent = set(&f.agent).unwrap_or_else(|| "claude-code".into());
    let mut spec = serde_json::json!({"repo": {"url": repo}, "agent": {"name": agent}, "prompt": prompt});
    if let Some(r) = set(&f.revision) {
        spec["repo"]["revision"] = r.into();
    }
    if let Some(m) = set(&f.model) {
        spec["agent"]["model"] = m.into();
    }
    if let Some(p) = set(&f.pool) {
        spec["runnerPoolRef"] = serde_json::json!({"name": p});
    }
    let mut budget = serde_json::Map::new();
    if let Some(t) = set(&f.timeout) {
        budget.insert("timeout".into(), t.into());
    }
    if let Some(c) = set(&f.max_cost_usd) {
        let usd: f64 = c.parse().map_err(|_| FormError::Invalid {
            field: "max cost (USD)",
            message: format!("{c:?} is not a number"),
        })?;
        if !usd.is_finite() || usd < 0.0 {
            return Err(FormError::Invalid {
                field: "max cost (USD)",
                message: format!("{c:?} is not a non-negative amount"),
            });
        }
        budget.insert("maxCostUSD".into(), usd.into());
    }
    if !budget.is_empty() {
        spec["budget"] = budget.into();
    }
    let approvers: Vec<String> = f.approvers.split(',').filter_map(set).collect();
    let policy = if approvers.is_empty() {
        serde_json::json!({})
    } else {
        serde_json::json!({"approvers": {"users": approvers}})
    };
    let mut approvals = serde_json::Map::new();
    if f.before_start == "true" {
        approvals.insert("beforeStart".into(), policy.clone());
    }
    if f.before_push == "true" {
        approvals.insert("beforePush".into(), policy);
    }
    if !approvals.is_empty() {
        spec["approvals"] = approvals.into();
    }
    if f.push == "true" || f.before_push == "true" {
        spec["output"] = serde_json::json!({"push": true});
    }
    let manifest = serde_json::json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": name, "namespace": ns}, "spec": spec,
    });
    check(manifest)
}

fn check(manifest: serde_json::Value) -> Result<serde_json::Value, FormError> {
    serde_json::from_value::<AgentRun>(manifest.clone()).map_err(|e| FormError::Invalid {
        field: "manifest",
        message: e.to_string(),
    })?;
    Ok(manifest)
}

/// A follow-up of `run`: a new run `name` in the same namespace with the same repository,
/// agent, pool, budget, approvals and output, the prompt `prompt`, and `resumeFrom` naming
/// `run` (the CLI session continues; docs/agents.md).
///
/// # Errors
/// [`FormError::Missing`] for an empty name or prompt.
pub fn build_followup(run: &AgentRun, name: &str, prompt: &str) -> Result<serde_json::Value, FormError> {
    let name = set(name).ok_or(FormError::Missing("name"))?;
    let prompt = set(prompt).ok_or(FormError::Missing("prompt"))?;
    let s = &run.spec;
    let mut spec = serde_json::json!({
        "repo": s.repo, "agent": s.agent, "prompt": prompt,
        "resumeFrom": {"name": run.metadata.name.clone().unwrap_or_default()},
    });
    for (k, v) in [
        ("runnerPoolRef", serde_json::to_value(&s.runner_pool_ref)),
        ("budget", serde_json::to_value(&s.budget)),
        ("approvals", serde_json::to_value(&s.approvals)),
        ("output", serde_json::to_value(&s.output)),
    ] {
        match v {
            Ok(serde_json::Value::Null) => {}
            Ok(v) => spec[k] = v,
            Err(e) => {
                return Err(FormError::Invalid {
                    field: "manifest",
                    message: e.to_string(),
                })
            }
        }
    }
    check(serde_json::json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": name, "namespace": run.metadata.namespace},
        "spec": spec,
    }))
}

/// The manifest as YAML text (what the form shows and GitOps users copy).
pub fn to_yaml(manifest: &serde_json::Value) -> String {
    serde_yaml::to_string(manifest).unwrap_or_else(|e| format!("# cannot render YAML: {e}"))
}
