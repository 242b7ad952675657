//! Script files: the fixed conversation the server plays, one assistant turn per model request.
//!
//! A script is a JSON file `DIR/<name>.json`. Its shape is either a bare list of turns or an
//! object `{"description"?, "turns": [...], "final_text"?}` (see the crate README for examples).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use thiserror::Error;

/// The text answered once every scripted turn has been played, unless the script sets
/// `final_text`.
pub const DEFAULT_FINAL_TEXT: &str = "Done.";

/// The model-name prefix stripped before looking a script up (`scripted-edit-file` → `edit-file`).
pub const MODEL_PREFIX: &str = "scripted-";

/// Errors from resolving or loading a script. Every variant is the caller's fault (a bad model
/// name or a bad script file) and is answered with HTTP 400.
#[derive(Debug, Error)]
pub enum ScriptError {
    /// The model name (after prefix stripping) is not a plain file stem.
    #[error("invalid script name {0:?}: use letters, digits, '-', '_' and '.' only")]
    InvalidName(String),
    /// No file `DIR/<name>.json` exists.
    #[error("unknown script {name:?} (model {model:?}): no file {path}")]
    NotFound {
        /// The script name looked up.
        name: String,
        /// The model name the request carried.
        model: String,
        /// The path that does not exist.
        path: String,
    },
    /// The file exists but could not be read.
    #[error("cannot read script {path}: {source}")]
    Read {
        /// The script file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a valid script.
    #[error("invalid script {path}: {message}")]
    Invalid {
        /// The script file.
        path: String,
        /// What is wrong, with serde's line/column where it applies.
        message: String,
    },
}

/// A generic action that the server translates into the tool call the requesting CLI offers.
///
/// JSON: `{"write_file": {"path": "hello.txt", "content": "..."}}` or `{"shell": "echo hi"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    /// Write `content` (verbatim, no newline added) to `path` (relative to the agent's working
    /// directory, or absolute).
    WriteFile {
        /// Target path.
        path: String,
        /// Full file content.
        content: String,
    },
    /// Run one shell command line (`bash -lc` semantics in the CLI's sandbox).
    Shell(String),
    /// Call the offered tool named `name` with `input` as its arguments, verbatim: a CLI's own
    /// tool (`ExitPlanMode`) or an MCP server's. The name matches exactly, or as the suffix
    /// after `__` (Claude Code offers an MCP server's tool `t` of server `s` as `mcp__s__t`), or
    /// after `mcp_<server>_` (Gemini CLI 0.61: `mcp_s_t`).
    Call {
        /// The tool's name (or its MCP name without the `mcp__<server>__` prefix).
        name: String,
        /// The arguments object.
        #[serde(default)]
        input: serde_json::Value,
    },
}

impl Action {
    /// A short label for logs: `write_file:<path>` or `shell`.
    pub fn label(&self) -> String {
        match self {
            Action::WriteFile { path, .. } => format!("write_file:{path}"),
            Action::Shell(_) => "shell".to_string(),
            Action::Call { name, .. } => format!("call:{name}"),
        }
    }
}

/// Token counts reported for one answer. Missing fields default to the values of
/// [`Usage::default`] (100 input, 20 output, no cache tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Usage {
    /// Prompt tokens (not counting cache reads/writes).
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Prompt tokens read from the prompt cache.
    pub cache_read_input_tokens: u64,
    /// Prompt tokens written to the prompt cache (Anthropic only).
    pub cache_creation_input_tokens: u64,
}

impl Default for Usage {
    fn default() -> Self {
        Usage {
            input_tokens: 100,
            output_tokens: 20,
            cache_read_input_tokens: 0,
            cache_creation_input_tokens: 0,
        }
    }
}

impl Usage {
    /// The small usage reported for side requests (requests offering no tools).
    pub fn side_request() -> Self {
        Usage {
            input_tokens: 10,
            output_tokens: 5,
            ..Usage::default()
        }
    }
}

/// One assistant turn: optional text, then optional tool call.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Turn {
    /// Assistant text, streamed before the tool call.
    #[serde(default)]
    pub text: Option<String>,
    /// The action to request; when absent the turn ends the conversation (`end_turn`).
    #[serde(default)]
    pub tool: Option<Action>,
    /// Reported usage for this answer.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// Milliseconds to wait before the answer's content (streaming requests get the opening
    /// event at once, then keepalives while waiting).
    #[serde(default)]
    pub sleep_ms: Option<u64>,
    /// When set, the turn is answered with this HTTP error status (e.g. 503, 429) in the
    /// protocol's error shape instead of a reply: a model endpoint that is down or throttling.
    #[serde(default)]
    pub status: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScriptObject {
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    turns: Vec<Turn>,
    #[serde(default)]
    final_text: Option<String>,
    #[serde(default)]
    require_key: Option<String>,
    #[serde(default)]
    text_marker: Option<String>,
}

/// A loaded, validated script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Script {
    /// The script's name (file stem).
    pub name: String,
    /// The scripted assistant turns, in order.
    pub turns: Vec<Turn>,
    /// The text answered for every turn index past the end of `turns`.
    pub final_text: String,
    /// When set, requests playing this script must carry this API key (`x-api-key`,
    /// `Authorization: Bearer` or `x-goog-api-key`), else they get 401: proves that a key
    /// reached the endpoint (e.g. injected by Paddock's gateway) without the client holding it.
    pub require_key: Option<String>,
    /// When set, a Chat Completions request that offers no tools plays this script (instead of
    /// getting the side answer) if its system messages contain this text: for CLIs that edit
    /// through text blocks, not tool calls (aider's `whole` edit format). Other tool-less
    /// requests (aider's commit messages) stay side requests. See [`Script::text_turn`].
    pub text_marker: Option<String>,
}

impl Script {
    /// Parses a script from JSON text. `name` is used in the result; `path` only in errors.
    ///
    /// Errors: [`ScriptError::Invalid`] when the JSON is malformed, has unknown fields, or a turn
    /// has neither `text` nor `tool`.
    pub fn parse(name: &str, path: &str, json: &str) -> Result<Script, ScriptError> {
        let invalid = |message: String| ScriptError::Invalid {
            path: path.to_string(),
            message,
        };
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
        let object = if value.is_array() {
            let turns: Vec<Turn> = serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
            ScriptObject {
                description: None,
                turns,
                final_text: None,
                require_key: None,
                text_marker: None,
            }
        } else {
            serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?
        };
        for (i, turn) in object.turns.iter().enumerate() {
            if turn.text.is_none() && turn.tool.is_none() && turn.status.is_none() {
                return Err(invalid(format!("turn {i} has neither \"text\" nor \"tool\"")));
            }
        }
        Ok(Script {
            name: name.to_string(),
            turns: object.turns,
            final_text: object.final_text.unwrap_or_else(|| DEFAULT_FINAL_TEXT.to_string()),
            require_key: object.require_key,
            text_marker: object.text_marker,
        })
    }

    /// The turn a tool-less (text) request plays, or `None` when it is a side request: the
    /// script has a [`Script::text_marker`] and `system` (the request's system text) contains
    /// it. A text CLI puts fixed example exchanges before the task (aider's "Ok." replies), so
    /// assistant turns are not counted as for tool calls: the turn is the number of
    /// `assistant_texts` (the history's assistant messages) equal, trimmed, to the text of one
    /// of the script's turns, i.e. the scripted replies the CLI already got.
    pub fn text_turn(&self, system: &str, assistant_texts: &[String]) -> Option<usize> {
        let marker = self.text_marker.as_deref()?;
        if !system.contains(marker) {
            return None;
        }
        let scripted: Vec<&str> = self
            .turns
            .iter()
            .filter_map(|t| t.text.as_deref())
            .map(str::trim)
            .collect();
        Some(assistant_texts.iter().filter(|a| scripted.contains(&a.trim())).count())
    }

    /// The turn to play when the history already holds `index` assistant turns, or `None` when
    /// the script is exhausted (answer `final_text` and end the turn).
    pub fn turn(&self, index: usize) -> Option<&Turn> {
        self.turns.get(index)
    }
}

/// Maps a model name to a script name: the last `/`-separated segment, without the
/// [`MODEL_PREFIX`]. `scripted-edit-file` → `edit-file`; `openai/scripted-x` → `x`.
pub fn script_name_for_model(model: &str) -> &str {
    let last = model.rsplit('/').next().unwrap_or(model);
    last.strip_prefix(MODEL_PREFIX).unwrap_or(last)
}

/// Reads and parses `dir/<name>.json`.
///
/// Errors: [`ScriptError::InvalidName`] for names with other characters than
/// `[A-Za-z0-9._-]` or starting with `.`, [`ScriptError::NotFound`], [`ScriptError::Read`],
/// [`ScriptError::Invalid`]. `model` is only used in the not-found message.
pub async fn load_script(dir: &Path, name: &str, model: &str) -> Result<Script, ScriptError> {
    let valid = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(ScriptError::InvalidName(name.to_string()));
    }
    let path: PathBuf = dir.join(format!("{name}.json"));
    let shown = path.display().to_string();
    let text = match tokio::fs::read_to_string(&path).await {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ScriptError::NotFound {
                name: name.to_string(),
                model: model.to_string(),
                path: shown,
            })
        }
        Err(source) => return Err(ScriptError::Read { path: shown, source }),
    };
    Script::parse(name, &shown, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_map_to_script_names() {
        for (model, name) in [
            ("scripted-edit-file", "edit-file"),
            ("edit-file", "edit-file"),
            ("openai/scripted-slow", "slow"),
            ("p/scripted-", ""),
        ] {
            assert_eq!(script_name_for_model(model), name, "{model}");
        }
    }

    #[test]
    fn parses_both_shapes_and_actions() {
        let list = r#"[{"text":"hi","tool":{"shell":"echo hi"}},{"text":"bye","usage":{"output_tokens":7}}]"#;
        let s = Script::parse("x", "x.json", list).unwrap();
        assert_eq!(s.turns.len(), 2);
        assert_eq!(s.turns[0].tool, Some(Action::Shell("echo hi".into())));
        assert_eq!(s.turns[1].usage.unwrap().output_tokens, 7);
        assert_eq!(s.turns[1].usage.unwrap().input_tokens, 100);
        assert_eq!(s.final_text, DEFAULT_FINAL_TEXT);

        let obj = r#"{"turns":[{"tool":{"write_file":{"path":"a","content":"b"}},"sleep_ms":5}],"final_text":"ok"}"#;
        let s = Script::parse("y", "y.json", obj).unwrap();
        assert_eq!(
            s.turns[0].tool,
            Some(Action::WriteFile {
                path: "a".into(),
                content: "b".into()
            })
        );
        assert_eq!(s.turns[0].sleep_ms, Some(5));
        assert_eq!(s.final_text, "ok");
        assert!(s.turn(1).is_none());
    }

    #[test]
    fn rejects_bad_scripts() {
        for bad in [
            "{",
            r#"[{"txt":"typo"}]"#,
            r#"[{"tool":{"delete":"x"}}]"#,
            r#"[{"sleep_ms":1}]"#,
            r#"{"turns":[],"extra":1}"#,
        ] {
            assert!(
                matches!(Script::parse("b", "b.json", bad), Err(ScriptError::Invalid { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn text_turns_count_scripted_replies_only() {
        let s = Script::parse(
            "t",
            "t.json",
            r#"{"text_marker":"Act as an expert","turns":[{"text":"a.txt\n```\nA\n```\n"},{"text":"b"}]}"#,
        )
        .unwrap();
        let history = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            s.text_turn("Act as an expert developer", &history(&["Ok.", "Ok, I won't."])),
            Some(0)
        );
        assert_eq!(
            s.text_turn("Act as an expert", &history(&["Ok.", "a.txt\n```\nA\n```"])),
            Some(1)
        );
        assert_eq!(s.text_turn("You write commit messages", &history(&[])), None);
        let plain = Script::parse("p", "p.json", r#"[{"text":"a"}]"#).unwrap();
        assert_eq!(plain.text_turn("Act as an expert", &[]), None);
    }

    #[tokio::test]
    async fn load_rejects_traversal_and_reports_missing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_script(dir.path(), "../etc/passwd", "m").await,
            Err(ScriptError::InvalidName(_))
        ));
        assert!(matches!(
            load_script(dir.path(), "nope", "scripted-nope").await,
            Err(ScriptError::NotFound { .. })
        ));
        std::fs::write(dir.path().join("ok.json"), r#"[{"text":"t"}]"#).unwrap();
        assert_eq!(load_script(dir.path(), "ok", "m").await.unwrap().turns.len(), 1);
    }
}
