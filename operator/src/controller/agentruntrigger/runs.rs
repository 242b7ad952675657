//! The runs a trigger creates, whatever starts them (a schedule, a webhook): the template's
//! metadata, the trigger's label, owned by the trigger.

use kube::Resource;
use paddock_crds::trigger::LABEL_TRIGGER;
use paddock_crds::{AgentRun, AgentRunTrigger};

/// A run of `trigger` named `run_name` with `spec`: the template's labels and annotations,
/// label `paddock.dev/trigger`, `annotations` added, owned by the trigger (controller,
/// `blockOwnerDeletion`). `None` without a name or UID. Pure.
pub fn owned_run(
    trigger: &AgentRunTrigger,
    run_name: &str,
    spec: paddock_crds::AgentRunSpec,
    annotations: impl IntoIterator<Item = (String, String)>,
) -> Option<AgentRun> {
    let name = trigger.metadata.name.as_deref()?;
    let mut run = AgentRun::new(run_name, spec);
    let meta = trigger.spec.run_template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels;
    labels.insert(LABEL_TRIGGER.into(), name.into());
    let mut all = meta.annotations;
    all.extend(annotations);
    run.metadata.namespace = trigger.metadata.namespace.clone();
    run.metadata.labels = Some(labels);
    run.metadata.annotations = Some(all);
    let mut owner = trigger.controller_owner_ref(&())?;
    owner.block_owner_deletion = Some(true);
    run.metadata.owner_references = Some(vec![owner]);
    Some(run)
}
