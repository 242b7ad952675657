//! `RunMessage`: a human's message to a running agent ("also update the changelog").
//!
//! One object per message, created by the sender (`kubectl paddock say <run> "…"`), never
//! changed afterwards. Why its own kind rather than a list on the AgentRun: the run's spec is
//! what GitOps applies (Argo CD and Flux would revert or flag an appended list), concurrent
//! senders never conflict on one object, RBAC can grant `create` on messages apart from runs,
//! and each message carries its own delivery status. The operator owns it by its run (garbage
//! collected with it), hands it to the run's pod (signed, like verdicts) and records whether and
//! when the agent got it.

use crate::condition::conditions_schema;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// What a message says, to which run, from whom. Immutable.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "paddock.dev",
    version = "v1alpha1",
    kind = "RunMessage",
    namespaced,
    status = "RunMessageStatus",
    shortname = "msg",
    category = "paddock",
    doc = "A human's message to a running AgentRun's agent.",
    printcolumn(name = "Run", type_ = "string", json_path = ".spec.runRef.name"),
    printcolumn(name = "Sender", type_ = "string", json_path = ".spec.sender"),
    printcolumn(name = "State", type_ = "string", json_path = ".status.state"),
    printcolumn(name = "Turn", type_ = "integer", json_path = ".status.turn"),
    printcolumn(name = "Text", type_ = "string", json_path = ".spec.text", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("self.spec == oldSelf.spec").message("a RunMessage cannot be changed; send another one"),
)]
#[serde(rename_all = "camelCase")]
pub struct RunMessageSpec {
    /// The AgentRun (in the same namespace) the message is for.
    pub run_ref: MessageRunReference,
    /// The message, as the agent will read it (1 to 4096 bytes).
    #[schemars(length(min = 1, max = 4096))]
    pub text: String,
    /// The sender, as the API server authenticates them: the chart's admission policy refuses a
    /// message whose `sender` is not the requesting user, so nobody sends in someone else's
    /// name (`kubectl paddock say` fills it in).
    #[schemars(length(min = 1, max = 253))]
    pub sender: String,
}

/// The run a message is for.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MessageRunReference {
    /// The AgentRun's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Where a message is.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageState {
    /// Not yet handed to the agent: the run has not started, or the pod has it and the agent
    /// has not taken it yet (the `Delivered` condition's reason says which).
    Pending,
    /// The agent CLI got it (`status.deliveredAt`, `status.turn`).
    Delivered,
    /// It will never be delivered: the run ended first, its agent takes no live input, the run
    /// does not exist, the sender may not message it, or its pod is full (the `Delivered`
    /// condition's reason says which).
    Refused,
}

impl MessageState {
    /// The state as written in `status.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageState::Pending => "Pending",
            MessageState::Delivered => "Delivered",
            MessageState::Refused => "Refused",
        }
    }
}

/// Observed state of a message.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RunMessageStatus {
    /// `Pending`, `Delivered` or `Refused`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<MessageState>,
    /// When the runner handed it to the agent CLI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Time>,
    /// The agent's turn at delivery (assistant turns the CLI had reported, from 0;
    /// agent-reported, as the runner in the agent's container counts them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<u32>,
    /// The attempt (from 1) whose pod got it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Conditions: `Delivered` (Unknown while pending, reason `WaitingForRun` or `SentToPod`;
    /// True, reason `Delivered`; False, reason `RunFinished`, `NotSupported`, `RunNotFound`,
    /// `SenderNotAllowed` (the run's prompt or plan is reviewed and the sender is not a reviewer
    /// listed by name) or `TooManyMessages` (the pod holds 32 messages or 64 KiB not yet taken)).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "conditions_schema")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` this status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Condition type of a message's delivery.
pub const COND_DELIVERED: &str = "Delivered";

/// Agents whose CLI takes a message while it works: Claude Code, whose input stays open
/// (`--input-format stream-json`; it shows a message sent mid-turn to the model with its next
/// request). Messages to other agents are refused with reason `NotSupported`.
pub fn takes_live_messages(agent: &crate::AgentName) -> bool {
    matches!(agent, crate::AgentName::ClaudeCode)
}
