//! Configuration from the environment the operator sets on each container, validated into
//! typed values ("parse, don't validate"). Anything invalid is an [`ConfigError`], which the
//! commands report as a `result` with reason `InvalidConfig`.

use paddock_crds::runner::vars;
use std::path::{Component, Path, PathBuf};

use crate::agent::{AgentKind, AgentSpec};

/// Errors in the container's environment.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("{0} is required")]
    Missing(&'static str),
    /// A variable has a value the runner refuses.
    #[error("{name} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Why (never contains a secret value).
        reason: String,
    },
}

impl ConfigError {
    fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            name,
            reason: reason.into(),
        }
    }
}

pub use crate::env::Env;

/// [`Env::get`] for a variable the command cannot do without.
trait Require {
    fn require(&self, name: &'static str) -> Result<&str, ConfigError>;
}

impl Require for Env {
    fn require(&self, name: &'static str) -> Result<&str, ConfigError> {
        self.get(name).ok_or(ConfigError::Missing(name))
    }
}

/// Checks a branch name: a valid `refs/heads/<name>` ref name that does not start with `-`.
///
/// # Errors
/// [`ConfigError::Invalid`] naming `PADDOCK_BRANCH`.
pub fn validate_branch(branch: &str) -> Result<(), ConfigError> {
    if branch.starts_with('-') {
        return Err(ConfigError::invalid(vars::BRANCH, "must not start with '-'"));
    }
    if branch.starts_with("refs/") || !git2::Reference::is_valid_name(&format!("refs/heads/{branch}")) {
        return Err(ConfigError::invalid(
            vars::BRANCH,
            format!("{branch:?} is not a valid branch name"),
        ));
    }
    Ok(())
}

/// Parses an optional boolean variable: `true`/`false` (case-insensitive), unset = `default`.
///
/// # Errors
/// [`ConfigError::Invalid`] for any other value.
pub fn parse_bool(env: &Env, name: &'static str, default: bool) -> Result<bool, ConfigError> {
    match env.get(name).map(str::to_ascii_lowercase).as_deref() {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(ConfigError::invalid(
            name,
            format!("expected true or false, got {other:?}"),
        )),
    }
}

/// Resolves `PADDOCK_WORKDIR` (a relative path) inside `worktree`: no absolute paths, no `..`,
/// and after resolving symlinks still inside the worktree. A missing directory is created.
///
/// # Errors
/// [`ConfigError::Invalid`] when the path escapes or cannot be created.
pub fn resolve_workdir(worktree: &Path, workdir: Option<&str>) -> Result<PathBuf, ConfigError> {
    let root = worktree.canonicalize().map_err(|e| {
        ConfigError::invalid(
            vars::WORKDIR,
            format!("worktree {} is missing: {e}", worktree.display()),
        )
    })?;
    let Some(rel) = workdir.map(str::trim).filter(|w| !w.is_empty() && *w != ".") else {
        return Ok(root);
    };
    let rel_path = Path::new(rel);
    for c in rel_path.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            _ => {
                return Err(ConfigError::invalid(
                    vars::WORKDIR,
                    "must be a relative path without '..'",
                ))
            }
        }
    }
    let joined = root.join(rel_path);
    std::fs::create_dir_all(&joined)
        .map_err(|e| ConfigError::invalid(vars::WORKDIR, format!("cannot create {rel}: {e}")))?;
    let resolved = joined
        .canonicalize()
        .map_err(|e| ConfigError::invalid(vars::WORKDIR, format!("cannot resolve {rel}: {e}")))?;
    if !resolved.starts_with(&root) {
        return Err(ConfigError::invalid(vars::WORKDIR, "resolves outside the worktree"));
    }
    Ok(resolved)
}

/// Default commit author name.
pub const DEFAULT_AUTHOR_NAME: &str = "Paddock Agent";
/// Default commit author e-mail.
pub const DEFAULT_AUTHOR_EMAIL: &str = "agent@paddock.dev";
/// Default time the agent side waits for the gateway's push result.
pub const DEFAULT_PUSH_TIMEOUT_SECS: u64 = 120;

/// Validated configuration of `paddock-runner run` (the `agent` container).
#[derive(Clone, Debug, PartialEq)]
pub struct RunConfig {
    /// Which adapter and how to call it.
    pub agent: AgentSpec,
    /// The run's branch (`PADDOCK_BRANCH`).
    pub branch: String,
    /// AgentRun name (`PADDOCK_RUN`).
    pub run: String,
    /// Its namespace (`PADDOCK_NAMESPACE`).
    pub namespace: String,
    /// Sub-directory of the worktree to run in (`PADDOCK_WORKDIR`), relative, unresolved.
    pub workdir: Option<String>,
    /// Commit message without the trailer (`PADDOCK_COMMIT_MESSAGE` or the default).
    pub commit_message: String,
    /// Commit author and committer name.
    pub author_name: String,
    /// Commit author and committer e-mail.
    pub author_email: String,
    /// Whether to push (`PADDOCK_PUSH`).
    pub push: bool,
    /// Seconds to wait for the gateway's push result (`PADDOCK_PUSH_TIMEOUT_SECS`, default 120).
    pub push_timeout_secs: u64,
    /// Where to write the termination message (`PADDOCK_TERMINATION_LOG`).
    pub termination_log: PathBuf,
    /// Whether the push waits for a `BeforePush` ApprovalGate (`PADDOCK_PUSH_APPROVAL`).
    pub push_approval: bool,
    /// `ToolUse` rules (`PADDOCK_TOOL_RULES`, a JSON array), when tool calls are gated.
    pub tool_rules: Option<Vec<paddock_crds::ToolRule>>,
    /// Whether the agent's plan is reviewed first (`PADDOCK_PLAN_REVIEW`).
    pub plan_review: bool,
    /// Whether the agent may ask a human (`PADDOCK_QUESTIONS`: the MCP tool `ask_human`).
    pub questions: bool,
    /// The downward API file of the pod's annotations, where verdicts appear
    /// (`PADDOCK_DECISIONS_FILE`, default [`crate::approval::DEFAULT_DECISIONS_FILE`]).
    pub decisions_file: PathBuf,
}

/// Default path of the container termination message.
pub const DEFAULT_TERMINATION_LOG: &str = "/dev/termination-log";

/// The termination-log path (`PADDOCK_TERMINATION_LOG` or [`DEFAULT_TERMINATION_LOG`]).
pub fn termination_log(env: &Env) -> PathBuf {
    PathBuf::from(env.get(vars::TERMINATION_LOG).unwrap_or(DEFAULT_TERMINATION_LOG))
}

/// The default commit message: `paddock: <run>`, a blank line, and the prompt's first line.
pub fn default_commit_message(run: &str, prompt: &str) -> String {
    let first = prompt
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    let first = paddock_crds::events::truncate(first, 200);
    if first.is_empty() {
        format!("paddock: {run}")
    } else {
        format!("paddock: {run}\n\n{first}")
    }
}

impl RunConfig {
    /// Reads and validates the `run` environment.
    ///
    /// # Errors
    /// [`ConfigError`] for a missing or invalid variable.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let kind: AgentKind = env
            .require(vars::AGENT)?
            .parse()
            .map_err(|e: String| ConfigError::invalid(vars::AGENT, e))?;
        let kind = match kind {
            AgentKind::Custom(_) => {
                crate::agent::custom::parse_command(env.require(vars::AGENT_COMMAND)?)
                    .map_err(|e| ConfigError::invalid(vars::AGENT_COMMAND, e))?;
                let output = env
                    .get(vars::AGENT_OUTPUT)
                    .unwrap_or("text")
                    .parse()
                    .map_err(|e: String| ConfigError::invalid(vars::AGENT_OUTPUT, e))?;
                AgentKind::Custom(output)
            }
            other => other,
        };
        let prompt = env.require(vars::PROMPT)?.to_string();
        let model = env.get(vars::MODEL).map(str::to_string);
        if model.as_deref().is_some_and(|m| m.starts_with('-')) {
            return Err(ConfigError::invalid(vars::MODEL, "must not start with '-'"));
        }
        let args = match env.get(vars::AGENT_ARGS) {
            None => Vec::new(),
            Some(raw) => serde_json::from_str::<Vec<String>>(raw).map_err(|e| {
                ConfigError::invalid(vars::AGENT_ARGS, format!("expected a JSON array of strings: {e}"))
            })?,
        };
        let max_turns = match env.get(vars::MAX_TURNS) {
            None => None,
            Some(raw) => match raw.trim().parse::<u32>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return Err(ConfigError::invalid(
                        vars::MAX_TURNS,
                        format!("expected a positive integer, got {raw:?}"),
                    ))
                }
            },
        };
        let branch = env.require(vars::BRANCH)?.to_string();
        validate_branch(&branch)?;
        let run = env.require(vars::RUN)?.to_string();
        let namespace = env.require(vars::NAMESPACE)?.to_string();
        let commit_message = match env.get(vars::COMMIT_MESSAGE).map(str::trim).filter(|m| !m.is_empty()) {
            Some(m) => m.to_string(),
            None => default_commit_message(&run, &prompt),
        };
        let author_name = env
            .get(vars::GIT_AUTHOR_NAME)
            .unwrap_or(DEFAULT_AUTHOR_NAME)
            .to_string();
        let author_email = env
            .get(vars::GIT_AUTHOR_EMAIL)
            .unwrap_or(DEFAULT_AUTHOR_EMAIL)
            .to_string();
        for (name, v) in [
            (vars::GIT_AUTHOR_NAME, &author_name),
            (vars::GIT_AUTHOR_EMAIL, &author_email),
        ] {
            if v.contains(['<', '>', '\n', '\r', '\0']) {
                return Err(ConfigError::invalid(name, "must not contain '<', '>' or line breaks"));
            }
        }
        let push = parse_bool(env, vars::PUSH, false)?;
        let push_timeout_secs = match env.get(vars::PUSH_TIMEOUT_SECS) {
            None => DEFAULT_PUSH_TIMEOUT_SECS,
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|_| ConfigError::invalid(vars::PUSH_TIMEOUT_SECS, format!("expected seconds, got {raw:?}")))?,
        };
        let push_approval = parse_bool(env, vars::PUSH_APPROVAL, false)?;
        let tool_rules =
            match env.get(vars::TOOL_RULES) {
                None => None,
                Some(raw) => Some(serde_json::from_str::<Vec<paddock_crds::ToolRule>>(raw).map_err(|e| {
                    ConfigError::invalid(vars::TOOL_RULES, format!("expected a JSON array of rules: {e}"))
                })?),
            };
        let plan_review = parse_bool(env, vars::PLAN_REVIEW, false)?;
        let questions = parse_bool(env, vars::QUESTIONS, false)?;
        Ok(RunConfig {
            push_approval,
            tool_rules,
            plan_review,
            questions,
            decisions_file: PathBuf::from(
                env.get(vars::DECISIONS_FILE)
                    .unwrap_or(crate::approval::DEFAULT_DECISIONS_FILE),
            ),
            agent: AgentSpec {
                kind,
                prompt,
                model,
                args,
                max_turns,
            },
            branch,
            run,
            namespace,
            workdir: env.get(vars::WORKDIR).map(str::to_string),
            commit_message,
            author_name,
            author_email,
            push,
            push_timeout_secs,
            termination_log: termination_log(env),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            (vars::AGENT, "shell"),
            (vars::PROMPT, "echo hi\nsecond line"),
            (vars::BRANCH, "paddock/r1"),
            (vars::RUN, "r1"),
            (vars::NAMESPACE, "ns"),
        ]
    }

    fn with(extra: &[(&'static str, &'static str)]) -> Result<RunConfig, ConfigError> {
        let mut v = base();
        v.extend_from_slice(extra);
        RunConfig::from_env(&Env::from_pairs(v))
    }

    #[test]
    fn defaults() {
        let c = with(&[]).unwrap();
        assert_eq!(c.commit_message, "paddock: r1\n\necho hi");
        assert_eq!(c.author_name, "Paddock Agent");
        assert!(!c.push);
        assert_eq!(c.push_timeout_secs, 120);
        assert_eq!(c.termination_log, PathBuf::from("/dev/termination-log"));
        assert_eq!(c.agent.kind, AgentKind::Shell);
    }

    #[test]
    fn rejects_bad_values() {
        assert_eq!(
            with(&[(vars::BRANCH, "-f")]).unwrap_err(),
            ConfigError::invalid(vars::BRANCH, "must not start with '-'")
        );
        assert!(matches!(
            with(&[(vars::BRANCH, "a..b")]),
            Err(ConfigError::Invalid { name: vars::BRANCH, .. })
        ));
        assert!(matches!(
            with(&[(vars::BRANCH, "a b")]),
            Err(ConfigError::Invalid { name: vars::BRANCH, .. })
        ));
        assert!(matches!(
            with(&[(vars::AGENT, "vim")]),
            Err(ConfigError::Invalid { name: vars::AGENT, .. })
        ));
        assert!(matches!(
            with(&[(vars::AGENT_ARGS, "{\"a\":1}")]),
            Err(ConfigError::Invalid {
                name: vars::AGENT_ARGS,
                ..
            })
        ));
        assert!(matches!(
            with(&[(vars::MAX_TURNS, "0")]),
            Err(ConfigError::Invalid {
                name: vars::MAX_TURNS,
                ..
            })
        ));
        assert!(matches!(
            with(&[(vars::PUSH, "yes")]),
            Err(ConfigError::Invalid { name: vars::PUSH, .. })
        ));
        assert!(matches!(
            with(&[(vars::GIT_AUTHOR_NAME, "a <b>")]),
            Err(ConfigError::Invalid { .. })
        ));
        let no_prompt = RunConfig::from_env(&Env::from_pairs(base().into_iter().filter(|(k, _)| *k != vars::PROMPT)));
        assert_eq!(no_prompt.unwrap_err(), ConfigError::Missing(vars::PROMPT));
    }

    #[test]
    fn custom_agents_need_a_command_and_a_known_output() {
        let c = with(&[
            (vars::AGENT, "custom"),
            ("PADDOCK_AGENT_COMMAND", r#"["node","/opt/a.js"]"#),
            (vars::AGENT_OUTPUT, "jsonl"),
        ])
        .unwrap();
        assert_eq!(c.agent.kind, AgentKind::Custom(crate::agent::custom::Output::JsonLines));
        let text = with(&[("PADDOCK_AGENT", "custom"), ("PADDOCK_AGENT_COMMAND", r#"["x"]"#)]).unwrap();
        assert_eq!(text.agent.kind, AgentKind::Custom(crate::agent::custom::Output::Text));
        assert_eq!(
            with(&[(vars::AGENT, "custom")]).unwrap_err(),
            ConfigError::Missing(vars::AGENT_COMMAND)
        );
        for (k, v) in [(vars::AGENT_COMMAND, "[]"), (vars::AGENT_OUTPUT, "yaml")] {
            let mut vars = vec![("PADDOCK_AGENT", "custom"), ("PADDOCK_AGENT_COMMAND", r#"["x"]"#)];
            vars.push((k, v));
            assert!(
                matches!(with(&vars), Err(ConfigError::Invalid { name, .. }) if name == k),
                "{k}={v}"
            );
        }
    }

    #[test]
    fn parses_args_and_turns() {
        let c = with(&[
            ("PADDOCK_AGENT_ARGS", r#"["--x","y z"]"#),
            (vars::MAX_TURNS, "7"),
            (vars::PUSH, "TRUE"),
        ])
        .unwrap();
        assert_eq!(c.agent.args, vec!["--x".to_string(), "y z".to_string()]);
        assert_eq!(c.agent.max_turns, Some(7));
        assert!(c.push);
    }

    #[test]
    fn secrets_come_from_named_vars() {
        let env = Env::from_pairs([
            (vars::REDACT_ENV, " A ,B,C,MISSING"),
            ("A", "sk-aaaa"),
            ("B", "abc"),
            ("C", "sk-aaaa-longer"),
        ]);
        assert_eq!(env.secrets(), vec!["sk-aaaa-longer".to_string(), "sk-aaaa".to_string()]);
    }

    #[test]
    fn workdir_stays_inside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        assert_eq!(resolve_workdir(&root, None).unwrap(), root);
        assert_eq!(resolve_workdir(&root, Some("a/b")).unwrap(), root.join("a/b"));
        assert!(resolve_workdir(&root, Some("../x")).is_err());
        assert!(resolve_workdir(&root, Some("/etc")).is_err());
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("link")).unwrap();
        assert!(resolve_workdir(&root, Some("link")).is_err());
    }
}
