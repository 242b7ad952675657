//! `paddock-runner permission-prompt`: the MCP server (stdio) that Claude Code calls as its
//! permission-prompt tool (`--permission-prompt-tool mcp__paddock__approve`), so that tool calls
//! matching `spec.approvals.toolUse` wait for a human.
//!
//! Claude Code calls the tool `approve` with `{"tool_name": str, "input": object,
//! "tool_use_id": str}` whenever a tool call needs permission (one not allowed by its mode or
//! `--allowedTools`), and expects a text result holding JSON: `{"behavior":"allow",
//! "updatedInput":{…}}` or `{"behavior":"deny","message":str}` (Claude Code's documented
//! permission-prompt contract). The runner starts Claude Code with `--permission-mode default`
//! when the run has ToolUse rules, so every call except Claude Code's read-only ones (reads
//! inside the working directory, read-only commands such as `ls` or `git log`) comes here.
//! This server:
//! - allows calls that match no rule: inside the pod the agent may run its tools freely
//!   (docs/agents.md, "Tool permissions");
//! - for a matching call ([`crate::toolrule`]), writes a request file
//!   ([`crate::approval::write_request`]), which the `run` process reports as an
//!   `approval_requested` event, waits for the verdict annotation
//!   ([`crate::approval::wait_verdict`]), records it, and allows or denies.
//!
//! Rules see file paths relative to the server's working directory, which is Claude Code's.
//!
//! Env: `PADDOCK_TOOL_RULES` (JSON array of `{"tool":str,"pattern":str?}`), `PADDOCK_WORKSPACE`,
//! `PADDOCK_DECISIONS_FILE`, `PADDOCK_RUN`.

use paddock_crds::runner::vars;
use std::path::{Path, PathBuf};

use paddock_crds::ToolRule;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{schemars, tool, tool_router, ServiceExt};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::approval::{matching_rule, requests_dir, wait_verdict, write_request, write_verdict, Verdict};
use crate::env::Env;
use crate::workspace::Workspace;

/// Arguments Claude Code passes to the permission-prompt tool.
#[derive(Deserialize, schemars::JsonSchema, Debug, Default)]
pub struct PromptRequest {
    /// The tool that wants to run (`Bash`, `Write`, …).
    pub tool_name: String,
    /// Its input.
    #[serde(default)]
    pub input: Value,
    /// Claude Code's id of the call.
    #[serde(default)]
    pub tool_use_id: Option<String>,
}

/// The server's configuration.
#[derive(Clone, Debug)]
pub struct PermissionServer {
    rules: Vec<ToolRule>,
    dir: PathBuf,
    decisions: PathBuf,
    run: String,
    check: crate::approval::VerdictCheck,
    /// The CLI's working directory (the server's own: Claude Code starts it there).
    cwd: PathBuf,
}

impl PermissionServer {
    /// Reads the configuration from `env`.
    ///
    /// # Errors
    /// `PADDOCK_TOOL_RULES` missing or not a JSON array of rules.
    pub fn from_env(env: &Env) -> Result<Self, String> {
        let rules: Vec<ToolRule> = env
            .get(vars::TOOL_RULES)
            .ok_or("PADDOCK_TOOL_RULES is not set")
            .and_then(|raw| serde_json::from_str(raw).map_err(|_| "PADDOCK_TOOL_RULES is not a JSON array of rules"))?;
        Ok(PermissionServer {
            rules,
            dir: requests_dir(&Workspace::from_env(env)),
            decisions: env
                .get(vars::DECISIONS_FILE)
                .unwrap_or(crate::approval::DEFAULT_DECISIONS_FILE)
                .into(),
            run: env.get(vars::RUN).unwrap_or_default().to_string(),
            check: crate::approval::VerdictCheck::from_env(env),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
        })
    }

    /// The working directory file paths are taken relative to.
    pub fn cwd(&self) -> &Path {
        &self.cwd
    }

    /// Decides one permission request; returns the JSON text Claude Code expects.
    pub async fn decide(&self, req: PromptRequest) -> String {
        let deny = |message: String| json!({"behavior": "deny", "message": message}).to_string();
        if matching_rule(&self.rules, &req.tool_name, &req.input, &self.cwd).is_none() {
            // No human needed: the pod is the sandbox.
            return json!({"behavior": "allow", "updatedInput": req.input}).to_string();
        }
        let request = match write_request(&self.dir, &req.tool_name, &req.input, &self.cwd) {
            Ok(r) => r,
            Err(e) => return deny(format!("Paddock: cannot ask for approval: {e}")),
        };
        let gate = format!("{}-{}", self.run, request.id);
        // The process group is killed when the run is terminated; no other way out.
        let (_tx, mut never) = tokio::sync::watch::channel(false);
        let verdict = wait_verdict(&self.decisions, &self.check, &request.id, "", &mut never)
            .await
            .unwrap_or(Verdict::Reject);
        let _ = write_verdict(&self.dir, &request.id, verdict);
        match verdict {
            Verdict::Approve => json!({"behavior": "allow", "updatedInput": req.input}).to_string(),
            Verdict::Reject | Verdict::RequestChanges => {
                deny(format!("Paddock: a human rejected this call at ApprovalGate {gate}"))
            }
            Verdict::Expired => deny(format!(
                "Paddock: nobody decided ApprovalGate {gate} in time; the call is denied"
            )),
        }
    }
}

#[tool_router(server_handler)]
impl PermissionServer {
    /// Claude Code's permission prompt: allow or deny one tool call.
    #[tool(
        name = "approve",
        description = "Asks a human (a Paddock ApprovalGate) whether a tool call may run"
    )]
    async fn approve(&self, Parameters(req): Parameters<PromptRequest>) -> String {
        self.decide(req).await
    }
}

/// Entry point of `paddock-runner permission-prompt`: serves MCP on stdin/stdout until the
/// client closes it. Returns the exit code.
pub fn command() -> i32 {
    let env = Env::from_process();
    let server = match PermissionServer::from_env(&env) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("paddock-runner permission-prompt: {e}");
            return 2;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("paddock-runner permission-prompt: cannot start the runtime: {e}");
            return 1;
        }
    };
    rt.block_on(async move {
        match server.serve(rmcp::transport::stdio()).await {
            Ok(running) => match running.waiting().await {
                Ok(_) => 0,
                Err(e) => {
                    eprintln!("paddock-runner permission-prompt: {e}");
                    1
                }
            },
            Err(e) => {
                eprintln!("paddock-runner permission-prompt: {e}");
                1
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(dir: &std::path::Path) -> PermissionServer {
        let (_, check) = crate::approval::tests::signed();
        server_with(dir, check)
    }

    fn server_with(dir: &std::path::Path, check: crate::approval::VerdictCheck) -> PermissionServer {
        PermissionServer {
            rules: vec![ToolRule {
                tool: "Bash".into(),
                pattern: Some("git push*".into()),
            }],
            dir: dir.join("approvals"),
            decisions: dir.join("annotations"),
            run: "r1".into(),
            check,
            cwd: PathBuf::from("/workspace/work"),
        }
    }

    /// Free inside the walls: a call no rule names runs, unchanged, with no gate.
    #[tokio::test]
    async fn unmatched_calls_are_allowed_without_a_request() {
        let d = tempfile::tempdir().unwrap();
        let s = server(d.path());
        for (tool, input) in [
            ("Bash", json!({"command": "rm -rf docs"})),
            ("Bash", json!({"command": "echo git push"})),
            ("Write", json!({"file_path": "/tmp/x", "content": "x"})),
        ] {
            let out = s
                .decide(PromptRequest {
                    tool_name: tool.into(),
                    input: input.clone(),
                    tool_use_id: None,
                })
                .await;
            let v: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["behavior"], "allow", "{tool} {input}");
            assert_eq!(v["updatedInput"], input);
        }
        assert!(!d.path().join("approvals").exists());
    }

    #[tokio::test]
    async fn matched_calls_wait_for_the_verdict() {
        let d = tempfile::tempdir().unwrap();
        let (signer, check) = crate::approval::tests::signed();
        let approve = crate::approval::tests::value(&signer, &check, "tool-1", "", "Approve");
        let s = server_with(d.path(), check);
        let input = json!({"command": "git push origin x"});
        let call = {
            let s = s.clone();
            let input = input.clone();
            tokio::spawn(async move {
                s.decide(PromptRequest {
                    tool_name: "Bash".into(),
                    input,
                    tool_use_id: Some("t1".into()),
                })
                .await
            })
        };
        let req = d.path().join("approvals/tool-1.request.json");
        for _ in 0..40 {
            if req.exists() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(req.exists());
        assert!(!call.is_finished(), "must wait for a verdict");
        // An unsigned verdict (what a namespace `edit` user can write) is not enough.
        std::fs::write(
            d.path().join("annotations"),
            "decision.paddock.dev/tool-1=\"Approve\"\n",
        )
        .unwrap();
        tokio::time::sleep(crate::approval::POLL_INTERVAL * 2).await;
        assert!(!call.is_finished(), "an unsigned verdict must not decide");
        std::fs::write(
            d.path().join("annotations"),
            format!("decision.paddock.dev/tool-1=\"{approve}\"\n"),
        )
        .unwrap();
        let out: Value = serde_json::from_str(&call.await.unwrap()).unwrap();
        assert_eq!(out["behavior"], "allow");
        assert_eq!(out["updatedInput"], input);
        assert_eq!(
            std::fs::read_to_string(d.path().join("approvals/tool-1.verdict")).unwrap(),
            "Approve"
        );
    }
}
