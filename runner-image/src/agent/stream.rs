//! How a CLI's output becomes events: the [`StreamMapper`] every adapter implements and the
//! helpers they share. Pure (no I/O), so each mapper is tested line by line on recorded
//! streams.

use paddock_crds::events::RunnerEvent;

/// Turns one CLI's output lines into events. Implementations are pure (no I/O) so they are
/// tested line by line on recorded streams.
pub trait StreamMapper: Send {
    /// Events for one stdout line (without its newline). Lines that are not the CLI's JSON
    /// become `log` events on `stdout`.
    fn stdout_line(&mut self, line: &str) -> Vec<RunnerEvent>;

    /// Events for one stderr line: a `log` event on `stderr`.
    fn stderr_line(&mut self, line: &str) -> Vec<RunnerEvent> {
        log_event("stderr", line)
    }

    /// Events after the CLI exited (e.g. Codex's `final`).
    fn end_of_stream(&mut self) -> Vec<RunnerEvent> {
        Vec::new()
    }

    /// Assistant turns (model answers) seen so far in the stream, for the `turn` of a
    /// [`RunnerEvent::MessageDelivered`]; 0 for a mapper that does not count them.
    fn turns(&self) -> u32 {
        0
    }
}

/// The `final` event a JSON-lines CLI ends with: its error when it reported one, else its last
/// assistant message, else nothing.
pub fn final_event(failure: Option<String>, last_message: Option<String>) -> Vec<RunnerEvent> {
    match (failure, last_message) {
        (Some(err), _) => vec![RunnerEvent::Final {
            text: err,
            is_error: true,
        }],
        (None, Some(text)) => vec![RunnerEvent::Final { text, is_error: false }],
        (None, None) => Vec::new(),
    }
}

/// A `log` event for a non-blank line, nothing for a blank one.
pub fn log_event(stream: &str, line: &str) -> Vec<RunnerEvent> {
    if line.trim().is_empty() {
        Vec::new()
    } else {
        vec![RunnerEvent::Log {
            stream: stream.into(),
            text: line.to_string(),
        }]
    }
}

/// Most lines an adapter keeps from a CLI's output until the CLI exits (Aider's reply, Hermes'
/// final text, OpenClaw's JSON envelope); further lines are not kept (they still become `log`
/// events where the adapter emits them).
pub const MAX_BUFFERED_LINES: usize = 4096;
/// Longest line (bytes) an adapter keeps in such a buffer; longer ones are cut. With
/// [`MAX_BUFFERED_LINES`], a CLI's output can hold at most 64 MiB of the runner's memory.
pub const MAX_BUFFERED_LINE_BYTES: usize = 16 * 1024;

/// Appends `line` to an adapter's buffer within [`MAX_BUFFERED_LINES`] and
/// [`MAX_BUFFERED_LINE_BYTES`].
pub(crate) fn push_bounded(buf: &mut Vec<String>, line: &str) {
    if buf.len() < MAX_BUFFERED_LINES {
        buf.push(paddock_crds::events::truncate(line, MAX_BUFFERED_LINE_BYTES));
    }
}

/// Feeds every line of `text` to `m` as stdout, then finishes it: the events a recorded stream
/// maps to (the adapters' tests).
#[cfg(test)]
pub(crate) fn map_stdout(mut m: impl StreamMapper, text: &str) -> Vec<RunnerEvent> {
    let mut out: Vec<RunnerEvent> = text.lines().flat_map(|l| m.stdout_line(l)).collect();
    out.extend(m.end_of_stream());
    out
}

/// Compact JSON of a value, or the string itself when it is a JSON string.
pub(crate) fn compact(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}
