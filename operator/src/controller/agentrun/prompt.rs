//! The run's prompt. The AgentRun cache keeps no `spec.prompt` (up to 64 KiB;
//! [`paddock_crds::cache::slim_agent_run`]), so the few writes that carry its text read it from
//! the API server then, with one GET of the run ([`fetch`]): the pod's start (the cold pod's
//! `PADDOCK_PROMPT`, a warm pod's claim), the BeforeStart gate's request, the pull request's
//! title and receipt. Other reconciles never read it.
//!
//! A prompt reaches a pod only as a [`PromptText`], made from the API server's copy of the run
//! ([`PromptText::of_fetched`], which refuses a run without `spec.prompt`, as a cached copy is)
//! or from `spec.promptFrom`'s ConfigMap key as read: a run whose cached copy lost its prompt
//! cannot start with an empty one.

use crate::error::{Error, Result};
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::Client;
use paddock_crds::AgentRun;

/// A run's prompt text, as read for the write that carries it: `spec.prompt` from the API
/// server, or `spec.promptFrom`'s ConfigMap key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PromptText(String);

impl PromptText {
    /// `spec.prompt` of `run` as the API server returned it.
    ///
    /// # Errors
    /// [`Error::PromptUnavailable`] when `run` has no `spec.prompt`: a run with
    /// `spec.promptFrom`, or a cached copy ([`paddock_crds::cache::prompt_stripped`]).
    pub fn of_fetched(run: &AgentRun) -> Result<Self> {
        match &run.spec.prompt {
            Some(p) => Ok(Self(p.clone())),
            None => Err(Error::PromptUnavailable(format!(
                "AgentRun {}/{} has no spec.prompt{}",
                run.metadata.namespace.as_deref().unwrap_or_default(),
                run.metadata.name.as_deref().unwrap_or_default(),
                if paddock_crds::cache::prompt_stripped(run) {
                    " (a cached copy, which keeps none: read the run from the API server)"
                } else {
                    " (its prompt comes from spec.promptFrom)"
                }
            ))),
        }
    }

    /// `spec.promptFrom`'s ConfigMap key, as read.
    pub fn from_config_map(text: String) -> Self {
        Self(text)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Reads `run`'s `spec.prompt` with one GET of the run (the same UID: a run deleted and
/// created again under its name has its own prompt).
///
/// # Errors
/// API errors (404: the run is gone); [`Error::PromptUnavailable`] when the run was replaced or
/// has no `spec.prompt`.
pub async fn fetch(client: &Client, run: &AgentRun) -> Result<PromptText> {
    let (ns, name) = crate::controller::namespace_and_name(&run.metadata)?;
    let fresh = Api::<AgentRun>::namespaced(client.clone(), &ns).get(&name).await?;
    if fresh.metadata.uid != run.metadata.uid {
        return Err(Error::PromptUnavailable(format!(
            "AgentRun {ns}/{name} was deleted and created again (UID {})",
            fresh.metadata.uid.as_deref().unwrap_or_default()
        )));
    }
    PromptText::of_fetched(&fresh)
}

/// [`fetch`] for a run with `spec.prompt`; `None` for a run with `spec.promptFrom` (no read:
/// its writes name the ConfigMap key, or read it themselves).
///
/// # Errors
/// As [`fetch`].
pub async fn fetch_spec_prompt(client: &Client, run: &AgentRun) -> Result<Option<PromptText>> {
    if run.spec.prompt_from.is_some() {
        return Ok(None);
    }
    fetch(client, run).await.map(Some)
}

/// Puts `prompt` into `pod`'s `agent` container as `PADDOCK_PROMPT`, in place of the empty value
/// [`super::build::build_pod`] leaves for a run with `spec.prompt`; a run with `spec.promptFrom`
/// keeps its ConfigMap key (the kubelet reads it). Pure.
pub fn set_prompt(pod: &mut Pod, prompt: &PromptText) {
    let Some(spec) = pod.spec.as_mut() else { return };
    for c in spec.containers.iter_mut().filter(|c| c.name == "agent") {
        for e in c.env.iter_mut().flatten() {
            if e.name == paddock_crds::runner::vars::PROMPT && e.value_from.is_none() {
                e.value = Some(prompt.as_str().to_string());
            }
        }
    }
}
