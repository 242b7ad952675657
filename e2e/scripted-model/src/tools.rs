//! Translating a generic [`Action`] into a concrete tool call among the tools a request offers.
//!
//! The choice is driven by the offered tools' names and JSON schemas, so one script works for
//! every CLI: Claude Code gets `Write {file_path, content}` / `Bash {command}`, Codex gets
//! `exec_command {cmd}` (a file write becomes a `printf` command), and other CLIs get whichever
//! of the known names they offer.

use serde_json::{json, Map, Value};

use crate::script::Action;

/// Names of file-writing tools, most preferred first.
const WRITE_TOOLS: &[&str] = &["Write", "write_file", "write", "create_file", "file_write"];
/// Names of shell tools, most preferred first.
const SHELL_TOOLS: &[&str] = &[
    "Bash",
    "exec_command",
    "shell",
    "run_shell_command",
    "bash",
    "terminal",
    "shell_command",
];
const PATH_KEYS: &[&str] = &["file_path", "path", "absolute_path", "filePath", "filename"];
const CONTENT_KEYS: &[&str] = &["content", "contents", "file_text", "text"];
const COMMAND_KEYS: &[&str] = &["command", "cmd"];

/// A tool offered by the request: its name and JSON schema of its arguments (Anthropic
/// `input_schema`, OpenAI `parameters`; `Value::Null` when absent).
#[derive(Debug, Clone, PartialEq)]
pub struct OfferedTool {
    /// Tool (function) name.
    pub name: String,
    /// JSON schema object of the arguments, or null.
    pub schema: Value,
}

impl OfferedTool {
    /// The tool `t` of a request: its `name`, its schema the first of `schema_keys` present
    /// (null when none is); `None` without a name.
    pub fn from_json(t: &Value, schema_keys: &[&str]) -> Option<OfferedTool> {
        Some(OfferedTool {
            name: t.get("name")?.as_str()?.to_string(),
            schema: schema_keys
                .iter()
                .find_map(|k| t.get(*k))
                .cloned()
                .unwrap_or(Value::Null),
        })
    }
}

/// A concrete tool call: the offered tool's name and a JSON object of arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCall {
    /// Tool (function) name, one of the offered tools.
    pub name: String,
    /// Arguments object.
    pub arguments: Value,
}

/// Quotes `s` for a POSIX shell as one word.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A shell command line that writes `content` verbatim to `path`, creating parent directories.
pub fn write_file_command(path: &str, content: &str) -> String {
    let write = format!("printf '%s' {} > {}", shell_quote(content), shell_quote(path));
    match std::path::Path::new(path).parent() {
        Some(p) if !p.as_os_str().is_empty() && p != std::path::Path::new("/") => {
            format!("mkdir -p {} && {write}", shell_quote(&p.to_string_lossy()))
        }
        _ => write,
    }
}

fn properties(schema: &Value) -> Option<&Map<String, Value>> {
    schema.get("properties").and_then(Value::as_object)
}

/// The first of `keys` that the schema declares, or the first of `keys` if the schema declares
/// none of them (or has no properties).
fn pick_key(schema: &Value, keys: &[&'static str]) -> &'static str {
    properties(schema)
        .and_then(|p| keys.iter().find(|k| p.contains_key(**k)).copied())
        .unwrap_or(keys[0])
}

fn find<'a>(offered: &'a [OfferedTool], names: &[&str]) -> Option<&'a OfferedTool> {
    names.iter().find_map(|n| offered.iter().find(|t| t.name == *n))
}

/// `args` with each argument the schema requires but `args` lacks filled in, where the schema
/// gives a choice: an `enum`'s first value. OpenHands requires a `security_risk`
/// (`UNKNOWN`/`LOW`/`MEDIUM`/`HIGH`) on its `terminal` and `file_editor` tools and refuses a
/// call without one; a real model picks one, the script does not say.
fn with_required_choices(schema: &Value, mut args: Map<String, Value>) -> Value {
    let required = schema.get("required").and_then(Value::as_array);
    for key in required.into_iter().flatten().filter_map(Value::as_str) {
        if args.contains_key(key) {
            continue;
        }
        let first = properties(schema)
            .and_then(|p| p.get(key))
            .and_then(|s| s.get("enum"))
            .and_then(Value::as_array)
            .and_then(|e| e.first());
        if let Some(v) = first {
            args.insert(key.to_string(), v.clone());
        }
    }
    Value::Object(args)
}

fn shell_call(tool: &OfferedTool, command: &str) -> ToolCall {
    let key = pick_key(&tool.schema, COMMAND_KEYS);
    let is_array = properties(&tool.schema)
        .and_then(|p| p.get(key))
        .and_then(|s| s.get("type"))
        .and_then(Value::as_str)
        == Some("array");
    let value = if is_array {
        json!(["bash", "-lc", command])
    } else {
        json!(command)
    };
    let mut args = Map::new();
    args.insert(key.to_string(), value);
    ToolCall {
        name: tool.name.clone(),
        arguments: with_required_choices(&tool.schema, args),
    }
}

/// Chooses the tool call for `action` among `offered`.
///
/// Errors: a human-readable reason when no suitable tool is offered (the server then answers
/// with that reason as text and ends the turn).
pub fn resolve(action: &Action, offered: &[OfferedTool]) -> Result<ToolCall, String> {
    match action {
        Action::WriteFile { path, content } => {
            let relative = !std::path::Path::new(path).is_absolute();
            let shell = find(offered, SHELL_TOOLS);
            let write = find(offered, WRITE_TOOLS)
                // A write tool that refuses relative paths (Qwen Code's `write_file`) cannot
                // write a relative path; a shell command in the working directory can.
                .filter(|t| !(relative && shell.is_some() && refuses_relative_path(t)));
            if let Some(tool) = write {
                let mut args = Map::new();
                args.insert(pick_key(&tool.schema, PATH_KEYS).to_string(), json!(path));
                args.insert(pick_key(&tool.schema, CONTENT_KEYS).to_string(), json!(content));
                return Ok(ToolCall {
                    name: tool.name.clone(),
                    arguments: with_required_choices(&tool.schema, args),
                });
            }
            match shell {
                Some(tool) => Ok(shell_call(tool, &write_file_command(path, content))),
                None => Err(no_tool("write_file", offered)),
            }
        }
        Action::Shell(command) => match find(offered, SHELL_TOOLS) {
            Some(tool) => Ok(shell_call(tool, command)),
            None => Err(no_tool("shell", offered)),
        },
        Action::Call { name, input } => {
            let (mcp, gemini_mcp) = (format!("__{name}"), format!("_{name}"));
            let tool = offered
                .iter()
                .find(|t| t.name == *name)
                .or_else(|| offered.iter().find(|t| t.name.ends_with(&mcp)))
                .or_else(|| {
                    offered
                        .iter()
                        .find(|t| t.name.starts_with("mcp_") && t.name.ends_with(&gemini_mcp))
                });
            match tool {
                Some(tool) => Ok(ToolCall {
                    name: tool.name.clone(),
                    arguments: match input {
                        Value::Null => json!({}),
                        v => v.clone(),
                    },
                }),
                None => Err(no_tool(&format!("call:{name}"), offered)),
            }
        }
    }
}

/// Whether `tool`'s path argument is documented as refusing relative paths (its schema
/// description says "relative paths are not supported", as Qwen Code's does). Descriptions
/// that only ask for an absolute path (Claude Code's `Write`, OpenCode's `write`) do not count:
/// those CLIs resolve a relative path in the working directory.
fn refuses_relative_path(tool: &OfferedTool) -> bool {
    let key = pick_key(&tool.schema, PATH_KEYS);
    properties(&tool.schema)
        .and_then(|p| p.get(key))
        .and_then(|s| s.get("description"))
        .and_then(Value::as_str)
        .is_some_and(|d| d.to_ascii_lowercase().contains("relative paths are not supported"))
}

fn no_tool(action: &str, offered: &[OfferedTool]) -> String {
    let names: Vec<&str> = offered.iter().map(|t| t.name.as_str()).collect();
    format!(
        "scripted-model: no tool for action {action} among the offered tools [{}]",
        names.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, props: Value) -> OfferedTool {
        OfferedTool {
            name: name.into(),
            schema: json!({"type": "object", "properties": props}),
        }
    }

    fn claude() -> Vec<OfferedTool> {
        vec![
            tool(
                "Bash",
                json!({"command": {"type": "string"}, "description": {"type": "string"}}),
            ),
            tool(
                "Write",
                json!({"file_path": {"type": "string"}, "content": {"type": "string"}}),
            ),
        ]
    }

    fn codex() -> Vec<OfferedTool> {
        vec![
            tool(
                "exec_command",
                json!({"cmd": {"type": "string"}, "workdir": {"type": "string"}}),
            ),
            tool("write_stdin", json!({"session_id": {"type": "number"}})),
        ]
    }

    #[test]
    fn claude_code_gets_write_and_bash() {
        let w = Action::WriteFile {
            path: "hello.txt".into(),
            content: "hi\n".into(),
        };
        assert_eq!(
            resolve(&w, &claude()).unwrap(),
            ToolCall {
                name: "Write".into(),
                arguments: json!({"file_path": "hello.txt", "content": "hi\n"})
            }
        );
        assert_eq!(
            resolve(&Action::Shell("ls".into()), &claude()).unwrap(),
            ToolCall {
                name: "Bash".into(),
                arguments: json!({"command": "ls"})
            }
        );
    }

    #[test]
    fn codex_gets_exec_command_and_writes_become_printf() {
        let w = Action::WriteFile {
            path: "sub/it's.txt".into(),
            content: "a 'q'\n".into(),
        };
        let call = resolve(&w, &codex()).unwrap();
        assert_eq!(call.name, "exec_command");
        assert_eq!(
            call.arguments,
            json!({"cmd": "mkdir -p 'sub' && printf '%s' 'a '\\''q'\\''\n' > 'sub/it'\\''s.txt'"})
        );
        assert_eq!(
            resolve(&Action::Shell("echo hi".into()), &codex()).unwrap().arguments,
            json!({"cmd": "echo hi"})
        );
    }

    #[test]
    fn write_tool_refusing_relative_paths_falls_back_to_shell() {
        // Qwen Code 0.24.4 offers these (descriptions abridged).
        let qwen = vec![
            tool(
                "write_file",
                json!({"file_path": {"type": "string", "description": "The absolute path to the file to write to (e.g., '/home/user/project/file.txt'). Relative paths are not supported."}, "content": {"type": "string"}}),
            ),
            tool("run_shell_command", json!({"command": {"type": "string"}})),
        ];
        let rel = Action::WriteFile {
            path: "hello.txt".into(),
            content: "hi\n".into(),
        };
        assert_eq!(
            resolve(&rel, &qwen).unwrap(),
            ToolCall {
                name: "run_shell_command".into(),
                arguments: json!({"command": "printf '%s' 'hi\n' > 'hello.txt'"})
            }
        );
        let abs = Action::WriteFile {
            path: "/w/hello.txt".into(),
            content: "hi\n".into(),
        };
        assert_eq!(resolve(&abs, &qwen).unwrap().name, "write_file");
        // Without a shell tool the write tool is still used (and will say why it failed).
        assert_eq!(resolve(&rel, &qwen[..1]).unwrap().name, "write_file");
        // "Absolute path" alone (Claude Code 2.1.328's Write) keeps the write tool.
        let claude = vec![
            tool(
                "Write",
                json!({"file_path": {"type": "string", "description": "The absolute path to the file to write (must be absolute, not relative)"}, "content": {"type": "string"}}),
            ),
            tool("Bash", json!({"command": {"type": "string"}})),
        ];
        assert_eq!(resolve(&rel, &claude).unwrap().name, "Write");
    }

    #[test]
    fn array_command_schema_gets_argv() {
        let offered = vec![tool("shell", json!({"command": {"type": "array"}}))];
        assert_eq!(
            resolve(&Action::Shell("ls".into()), &offered).unwrap().arguments,
            json!({"command": ["bash", "-lc", "ls"]})
        );
    }

    #[test]
    fn required_enum_arguments_get_their_first_value() {
        // OpenHands 1.16.0's `terminal` (description and other properties abridged).
        let risk = json!({"type": "string", "enum": ["UNKNOWN", "LOW", "MEDIUM", "HIGH"]});
        let terminal = OfferedTool {
            name: "terminal".into(),
            schema: json!({"type": "object",
                "properties": {"security_risk": risk, "command": {"type": "string"},
                               "is_input": {"type": "boolean"}, "mode": {"enum": ["a", "b"]}},
                "required": ["command", "security_risk"]}),
        };
        assert_eq!(
            resolve(&Action::Shell("ls".into()), &[terminal]).unwrap().arguments,
            json!({"command": "ls", "security_risk": "UNKNOWN"})
        );
    }

    #[test]
    fn missing_tool_is_an_error() {
        let err = resolve(&Action::Shell("ls".into()), &[tool("view_image", json!({}))]).unwrap_err();
        assert!(err.contains("view_image"), "{err}");
    }

    #[test]
    fn write_file_command_really_writes() {
        let dir = tempfile::tempdir().unwrap();
        let content = "line 'one'\n$HOME `x` \\n\n";
        let cmd = write_file_command("a/b.txt", content);
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .current_dir(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(std::fs::read_to_string(dir.path().join("a/b.txt")).unwrap(), content);
    }
}
