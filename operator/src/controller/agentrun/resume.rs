//! `spec.resumeFrom`: where the earlier run stands ([`resume_from`]) and how a pod continues
//! its CLI session ([`apply_resume`]).

use super::build::env;
use k8s_openapi::api::core::v1::{Pod, Volume, VolumeMount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use paddock_crds::runner::vars;
use paddock_crds::{AgentRun, Phase, Reason, POOL_WAIT_SECS};

/// Where a run's `spec.resumeFrom` stands.
#[derive(Clone, Debug, PartialEq)]
pub enum ResumeSource {
    /// Resume from this session ConfigMap, on this revision (the earlier run's pushed commit).
    Ready {
        /// The session ConfigMap.
        session_cm: String,
        /// The commit to start from, when the earlier run pushed.
        revision: Option<String>,
    },
    /// Not yet: (reason, message).
    Wait(Reason, String),
    /// Never: (reason, message).
    Fail(Reason, String),
}

/// Where `run`'s `spec.resumeFrom` (the run `name`, read as `src`) stands. Pure.
pub fn resume_from(run: &AgentRun, src: Option<&AgentRun>, name: &str, now: &Time) -> ResumeSource {
    let ns = run.metadata.namespace.as_deref().unwrap_or_default();
    let Some(src) = src else {
        let waited = run
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| now.0.as_second() - t.0.as_second());
        let message = format!("spec.resumeFrom names AgentRun {name}, which does not exist in namespace {ns}");
        return if waited >= POOL_WAIT_SECS {
            ResumeSource::Fail(Reason::ResumeNotPossible, format!("{message} (waited {waited}s)"))
        } else {
            ResumeSource::Wait(
                Reason::WaitingForResumeSource,
                format!(
                    "{message}; the run fails if it does not appear within {POOL_WAIT_SECS}s of the run's creation"
                ),
            )
        };
    };
    if src.spec.agent.name != run.spec.agent.name {
        return ResumeSource::Fail(
            Reason::ResumeNotPossible,
            format!(
                "AgentRun {name} ran agent {}, this run agent {}: a session resumes in the same CLI only",
                src.spec.agent.name.as_str(),
                run.spec.agent.name.as_str()
            ),
        );
    }
    let status = src.status.clone().unwrap_or_default();
    if !status.phase.is_some_and(Phase::is_terminal) {
        return ResumeSource::Wait(
            Reason::WaitingForResumeSource,
            format!(
                "waiting for AgentRun {name} (phase {}) to end before resuming its session",
                status
                    .phase
                    .map(|p| format!("{p:?}"))
                    .unwrap_or_else(|| "unknown".into())
            ),
        );
    }
    let Some(result) = status.result else {
        return ResumeSource::Fail(
            Reason::ResumeNotPossible,
            format!("AgentRun {name} ended without a result, so no session was saved"),
        );
    };
    let Some(session_cm) = result.session_ref else {
        return ResumeSource::Fail(
            Reason::ResumeNotPossible,
            format!("AgentRun {name} saved no CLI session (its agent reported none, or it was too large)"),
        );
    };
    let revision = if result.run.pushed {
        result.run.commit.clone()
    } else {
        None
    };
    ResumeSource::Ready { session_cm, revision }
}

/// Where a resumed session is mounted in the agent container (the runner's
/// `PADDOCK_RESUME_DIR`).
pub const RESUME_DIR: &str = vars::RESUME_DIR_PATH;

/// Makes `pod` continue an earlier run's CLI session (`spec.resumeFrom`): the session
/// ConfigMap `session_cm` mounted read-only at [`RESUME_DIR`] in the agent container with
/// `PADDOCK_RESUME_DIR` pointing there, and, when `revision` is given (the earlier run's pushed
/// branch), `PADDOCK_REVISION` of every container set to it so the worktree starts from that
/// run's changes.
pub fn apply_resume(pod: &mut Pod, session_cm: &str, revision: Option<&str>) {
    let Some(spec) = pod.spec.as_mut() else { return };
    spec.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: "resume".into(),
        config_map: Some(k8s_openapi::api::core::v1::ConfigMapVolumeSource {
            name: session_cm.to_string(),
            ..Default::default()
        }),
        ..Default::default()
    });
    let containers = spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut());
    for c in containers {
        if let Some(rev) = revision {
            for e in c.env.iter_mut().flatten() {
                if e.name == vars::REVISION {
                    e.value = Some(rev.to_string());
                }
            }
        }
        if c.name == "agent" {
            c.volume_mounts.get_or_insert_with(Vec::new).push(VolumeMount {
                name: "resume".into(),
                mount_path: RESUME_DIR.into(),
                read_only: Some(true),
                ..Default::default()
            });
            c.env
                .get_or_insert_with(Vec::new)
                .push(env(vars::RESUME_DIR, RESUME_DIR));
        }
    }
}
