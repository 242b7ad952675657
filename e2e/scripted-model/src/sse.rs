//! Server-sent-event framing and the shape of a planned stream.

use serde_json::Value;

/// A stream planned in full before sending: `head` frames go out at once, then `keepalive`
/// is repeated while the reply's sleep lasts, then `tail` frames.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamPlan {
    /// Opening frames (e.g. `message_start`, `response.created`).
    pub head: Vec<String>,
    /// Frame sent every keepalive interval during the sleep.
    pub keepalive: String,
    /// The content frames and the closing frames.
    pub tail: Vec<String>,
}

/// A named SSE event: `event: NAME\ndata: JSON\n\n`.
pub fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// An unnamed SSE event: `data: TEXT\n\n` (TEXT is JSON or `[DONE]`).
pub fn data(text: &str) -> String {
    format!("data: {text}\n\n")
}

/// An SSE comment line, ignored by clients: `: TEXT\n\n`.
pub fn comment(text: &str) -> String {
    format!(": {text}\n\n")
}
