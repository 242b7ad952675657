//! `paddock-runner permission-prompt`: the runner's MCP server (stdio), a child of the agent
//! CLI. It offers two tools:
//! - `approve`, which Claude Code calls as its permission-prompt tool
//!   (`--permission-prompt-tool mcp__paddock__approve`), so that tool calls matching
//!   `spec.approvals.toolUse` wait for a human and, with plan review, the plan does;
//! - `ask_human(question, options?)` when `PADDOCK_QUESTIONS=true`, which the agent calls to ask
//!   a human (`mcp__paddock__ask_human` in Claude Code, `mcp_paddock_ask_human` in Gemini CLI,
//!   which starts the server with `--ask-human-only` and so is offered only this tool).
//!
//! Claude Code calls `approve` with `{"tool_name": str, "input": object, "tool_use_id": str}`
//! whenever a tool call needs permission (one not allowed by its mode or `--allowedTools`), and
//! expects a text result holding JSON: `{"behavior":"allow", "updatedInput":{…}}` or
//! `{"behavior":"deny","message":str}` (Claude Code's documented permission-prompt contract).
//! The runner starts Claude Code with `--permission-mode default` when the run has ToolUse
//! rules, so every call except Claude Code's read-only ones (reads inside the working
//! directory, read-only commands such as `ls` or `git log`) comes here, and with
//! `--permission-mode plan` when its plan is reviewed (`PADDOCK_PLAN_REVIEW=true`). This server:
//! - with plan review, turns `ExitPlanMode` into a `Plan` request `plan-<n>` ([`plan_text`]
//!   says where the plan comes from) and answers with the verdict: `Approve` allows it (Claude
//!   Code leaves plan mode and carries the plan out in the same session), `RequestChanges`
//!   denies it with the reviewer's text (the agent revises the plan and presents it again),
//!   `Reject` or `Expired` denies it (the `run` process then stops the CLI: the run ends
//!   `Rejected`); until a plan is approved, it denies every call but [`PLANNING_TOOLS`] and
//!   writes of Claude Code's plan files ([`writes_plan_file`]);
//! - allows calls that match no rule: inside the pod the agent may run its tools freely
//!   (docs/agents.md, "Tool permissions");
//! - for a matching call ([`crate::toolrule`]), writes a request file
//!   ([`crate::approval::write_request`]), which the `run` process reports as an
//!   `approval_requested` event, waits for the verdict annotation
//!   ([`crate::approval::wait_verdict`]), records it, and allows or denies.
//!
//! `ask_human` writes a `Question` request `question-<n>` and waits for its verdict: `Approve`
//! gives the answer (the verdict's signed text), `Reject` and `Expired` a text telling the agent
//! that no answer comes and to go on with its own judgement ([`DECLINED`], [`NO_ANSWER`]); the
//! run goes on in every case.
//!
//! Rules see file paths relative to the server's working directory, which is the CLI's.
//!
//! Env (the CLI passes it in its MCP server configuration): `PADDOCK_TOOL_RULES` (JSON array of
//! `{"tool":str,"pattern":str?}`; no rules when unset), `PADDOCK_WORKSPACE`,
//! `PADDOCK_DECISIONS_FILE`, `PADDOCK_RUN`, and for the verdicts' signatures
//! `PADDOCK_VERDICT_PUBLIC_KEY`, `PADDOCK_NAMESPACE`, `PADDOCK_RUN_UID`, `PADDOCK_ATTEMPT`;
//! `PADDOCK_PLAN_REVIEW`, `PADDOCK_QUESTIONS` (`true` to enable); `CLAUDE_CONFIG_DIR` or `HOME`
//! (where Claude Code keeps plan files).

use paddock_crds::runner::vars;
use std::path::{Path, PathBuf};
use std::time::Duration;

use paddock_crds::ToolRule;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{schemars, tool, tool_handler, tool_router, ServerHandler, ServiceExt};
use serde::Deserialize;
use serde_json::{json, Value};

pub use crate::agent::claude::EXIT_PLAN_MODE;
use crate::approval::{
    matching_rule, plan_approved, plan_file, requests_dir, wait_verdict, wait_verdict_text, write_plan, write_question,
    write_request, write_verdict, Verdict, VerdictCheck,
};
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

/// Arguments of `ask_human`.
#[derive(Deserialize, schemars::JsonSchema, Debug, Default)]
pub struct Question {
    /// The question for a human (at most 4096 bytes).
    pub question: String,
    /// Answers to choose from, if any (at most 16, each at most 256 bytes); the human may also
    /// answer otherwise.
    #[serde(default)]
    pub options: Vec<String>,
}

/// Which tools the server offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// `approve` (Claude Code's permission prompt) and, with `PADDOCK_QUESTIONS=true`,
    /// `ask_human`.
    PermissionPrompt,
    /// `ask_human` only (`--ask-human-only`: Gemini CLI, which has no permission prompt).
    AskHumanOnly,
}

/// Tools Claude Code may still ask for while its plan waits for approval: the ones that read or
/// plan (`Task`/`Agent` sub-agents ask for their own calls here too), `ExitPlanMode` and
/// `ask_human`.
pub const PLANNING_TOOLS: &[&str] = &[
    "Agent",
    "Read",
    "Glob",
    "Grep",
    "LS",
    "NotebookRead",
    "WebFetch",
    "WebSearch",
    "TodoWrite",
    "Task",
    "ExitPlanMode",
    "mcp__paddock__ask_human",
];

/// How long the server waits for the `run` process to leave the plan text of an
/// `ExitPlanMode` call ([`crate::approval::plan_file`]).
pub const PLAN_FILE_WAIT: Duration = Duration::from_secs(5);
/// The plan a `Plan` gate shows when the agent gave no plan text at all.
pub const NO_PLAN_TEXT: &str =
    "(The agent asked to leave plan mode but gave no plan text; Paddock found none in its call, its stream or its plan files.)";
/// The result of `ask_human` when the human declined to answer (`Reject`).
pub const DECLINED: &str =
    "The human declined to answer this question. Go on with your own judgement, and say in your final message what you assumed.";
/// The result of `ask_human` when nobody answered in time (`Expired`).
pub const NO_ANSWER: &str =
    "No answer came in time. Go on with your own judgement, and say in your final message what you assumed.";

/// The server's configuration.
#[derive(Clone, Debug)]
pub struct PermissionServer {
    rules: Vec<ToolRule>,
    dir: PathBuf,
    decisions: PathBuf,
    run: String,
    check: VerdictCheck,
    /// The CLI's working directory (the server's own: the CLI starts it there).
    cwd: PathBuf,
    /// `PADDOCK_PLAN_REVIEW=true`.
    plan_review: bool,
    /// Where Claude Code writes plan files (`<config dir>/plans`).
    plans_dir: PathBuf,
    router: ToolRouter<Self>,
}

impl PermissionServer {
    /// Reads the configuration from `env`; `offer` says which tools to offer.
    ///
    /// # Errors
    /// `PADDOCK_TOOL_RULES` set but not a JSON array of rules.
    pub fn from_env(env: &Env, offer: Offer) -> Result<Self, String> {
        let rules: Vec<ToolRule> = match env.get(vars::TOOL_RULES) {
            None => Vec::new(),
            Some(raw) => serde_json::from_str(raw).map_err(|_| "PADDOCK_TOOL_RULES is not a JSON array of rules")?,
        };
        let config_dir = env
            .get("CLAUDE_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::agent::adapter::home(env).join(".claude"));
        let mut router = Self::tool_router();
        if offer == Offer::AskHumanOnly {
            router.remove_route("approve");
        }
        if !env.is_true(vars::QUESTIONS) {
            router.remove_route("ask_human");
        }
        Ok(PermissionServer {
            rules,
            dir: requests_dir(&Workspace::from_env(env)),
            decisions: env
                .get(vars::DECISIONS_FILE)
                .unwrap_or(crate::approval::DEFAULT_DECISIONS_FILE)
                .into(),
            run: env.get(vars::RUN).unwrap_or_default().to_string(),
            check: VerdictCheck::from_env(env),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            plan_review: env.is_true(vars::PLAN_REVIEW),
            plans_dir: config_dir.join("plans"),
            router,
        })
    }

    /// The working directory file paths are taken relative to.
    pub fn cwd(&self) -> &Path {
        &self.cwd
    }

    /// The names of the tools offered.
    pub fn tools(&self) -> Vec<String> {
        self.router.list_all().into_iter().map(|t| t.name.to_string()).collect()
    }

    /// Decides one permission request; returns the JSON text Claude Code expects.
    pub async fn decide(&self, req: PromptRequest) -> String {
        let allow = |input: &Value| json!({"behavior": "allow", "updatedInput": input}).to_string();
        let deny = |message: String| json!({"behavior": "deny", "message": message}).to_string();
        if self.plan_review {
            if req.tool_name == EXIT_PLAN_MODE {
                return self.review_plan(req).await;
            }
            if !PLANNING_TOOLS.contains(&req.tool_name.as_str())
                && !writes_plan_file(&req, &self.plans_dir)
                && plan_approved(&self.decisions, &self.check).is_none()
            {
                return deny(format!(
                    "Paddock: this run's plan must be approved first. Nothing may change before a human approves your plan: finish planning and present the plan with {EXIT_PLAN_MODE}."
                ));
            }
        }
        if matching_rule(&self.rules, &req.tool_name, &req.input, &self.cwd).is_none() {
            // No human needed: the pod is the sandbox.
            return allow(&req.input);
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
            Verdict::Approve => allow(&req.input),
            Verdict::Reject | Verdict::RequestChanges => {
                deny(format!("Paddock: a human rejected this call at ApprovalGate {gate}"))
            }
            Verdict::Expired => deny(format!(
                "Paddock: nobody decided ApprovalGate {gate} in time; the call is denied"
            )),
        }
    }

    /// `ExitPlanMode` under plan review: a `Plan` request and its verdict.
    async fn review_plan(&self, req: PromptRequest) -> String {
        let deny = |message: String| json!({"behavior": "deny", "message": message}).to_string();
        let plan = plan_text(&req, &self.dir, &self.plans_dir, PLAN_FILE_WAIT).await;
        let request = match write_plan(&self.dir, &plan) {
            Ok(r) => r,
            Err(e) => return deny(format!("Paddock: cannot ask for the plan's review: {e}")),
        };
        let gate = format!("{}-{}", self.run, request.id);
        let (_tx, mut never) = tokio::sync::watch::channel(false);
        let (verdict, text) = wait_verdict_text(&self.decisions, &self.check, &request.id, &mut never)
            .await
            .unwrap_or((Verdict::Reject, String::new()));
        let _ = write_verdict(&self.dir, &request.id, verdict);
        match verdict {
            Verdict::Approve => json!({"behavior": "allow", "updatedInput": req.input}).to_string(),
            Verdict::RequestChanges => deny(format!(
                "Paddock: the reviewer of your plan (ApprovalGate {gate}) asks for changes:\n\n{text}\n\nRevise the plan accordingly and present the whole revised plan again with {EXIT_PLAN_MODE}. Change nothing before it is approved."
            )),
            Verdict::Reject => deny(format!(
                "Paddock: the plan was rejected at ApprovalGate {gate}. Stop here: the run ends without changes."
            )),
            Verdict::Expired => deny(format!(
                "Paddock: the plan was rejected: nobody approved it at ApprovalGate {gate} in time. Stop here: the run ends without changes."
            )),
        }
    }

    /// `ask_human`: a `Question` request and its answer. `Err` (an error result the agent sees)
    /// when the question is out of bounds or cannot be asked.
    pub async fn ask(&self, q: Question) -> Result<String, String> {
        let request = write_question(&self.dir, &q.question, &q.options).map_err(|e| format!("Paddock: {e}"))?;
        let (_tx, mut never) = tokio::sync::watch::channel(false);
        let (verdict, text) = wait_verdict_text(&self.decisions, &self.check, &request.id, &mut never)
            .await
            .unwrap_or((Verdict::Expired, String::new()));
        let _ = write_verdict(&self.dir, &request.id, verdict);
        Ok(match verdict {
            Verdict::Approve => text,
            Verdict::Reject | Verdict::RequestChanges => DECLINED.to_string(),
            Verdict::Expired => NO_ANSWER.to_string(),
        })
    }
}

/// Whether `req` writes or edits a file in `plans_dir` (Claude Code's plan files, outside the
/// repository, under its config directory): in plan mode the agent may write its plan there
/// before it presents it. An absolute path without `..` only.
pub fn writes_plan_file(req: &PromptRequest, plans_dir: &Path) -> bool {
    matches!(req.tool_name.as_str(), "Write" | "Edit" | "MultiEdit")
        && req
            .input
            .get("file_path")
            .and_then(Value::as_str)
            .map(Path::new)
            .is_some_and(|p| {
                p.is_absolute()
                    && p.starts_with(plans_dir)
                    && !p.components().any(|c| c == std::path::Component::ParentDir)
            })
}

/// The plan text of an `ExitPlanMode` call, from the first place that has one: (a) the call's
/// input `plan`; (b) the file the `run` process writes when it sees the call in the CLI's
/// stream ([`plan_file`] in `dir`, waited for up to `wait`, as the stream line and the
/// permission request race); (c) the newest `*.md` in `plans_dir` (where Claude Code may write
/// the plan first); else [`NO_PLAN_TEXT`]. Not bounded here ([`write_plan`] cuts it).
pub async fn plan_text(req: &PromptRequest, dir: &Path, plans_dir: &Path, wait: Duration) -> String {
    let non_empty = |t: String| (!t.trim().is_empty()).then_some(t);
    if let Some(p) = req
        .input
        .get("plan")
        .and_then(Value::as_str)
        .map(str::to_string)
        .and_then(non_empty)
    {
        return p;
    }
    if let Some(file) = req.tool_use_id.as_deref().and_then(|id| plan_file(dir, id)) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(p) = std::fs::read_to_string(&file).ok().and_then(non_empty) {
                return p;
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let newest = std::fs::read_dir(plans_dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "md"))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .max();
    if let Some(p) = newest
        .and_then(|(_, path)| std::fs::read_to_string(path).ok())
        .and_then(non_empty)
    {
        return p;
    }
    NO_PLAN_TEXT.to_string()
}

#[tool_router]
impl PermissionServer {
    /// Claude Code's permission prompt: allow or deny one tool call.
    #[tool(
        name = "approve",
        description = "Asks a human (a Paddock ApprovalGate) whether a tool call may run"
    )]
    async fn approve(&self, Parameters(req): Parameters<PromptRequest>) -> String {
        self.decide(req).await
    }

    /// The agent asks a human a question and gets the answer.
    #[tool(
        name = "ask_human",
        description = "Ask a human a question when you cannot decide something yourself (a requirement, a choice between designs, missing information). Blocks until a human answers; the result is the answer. Offer options when there are clear choices. If nobody answers, go on with your own judgement."
    )]
    async fn ask_human(&self, Parameters(q): Parameters<Question>) -> Result<String, String> {
        self.ask(q).await
    }
}

#[tool_handler(router = self.router)]
impl ServerHandler for PermissionServer {}

/// Entry point of `paddock-runner permission-prompt`: serves MCP on stdin/stdout until the
/// client closes it, offering the tools of `offer`. Returns the exit code.
pub fn command(offer: Offer) -> i32 {
    let env = Env::from_process();
    let server = match PermissionServer::from_env(&env, offer) {
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
            plan_review: false,
            plans_dir: dir.join("claude/plans"),
            router: PermissionServer::tool_router(),
        }
    }

    /// Waits until `path` exists (the server wrote its request).
    async fn wait_for(path: &std::path::Path) {
        for _ in 0..100 {
            if path.exists() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{} was not written", path.display());
    }

    fn request(d: &std::path::Path, id: &str) -> crate::approval::Request {
        serde_json::from_str(&std::fs::read_to_string(d.join(format!("approvals/{id}.request.json"))).unwrap()).unwrap()
    }

    fn prompt(tool: &str, input: Value, id: Option<&str>) -> PromptRequest {
        PromptRequest {
            tool_name: tool.into(),
            input,
            tool_use_id: id.map(str::to_string),
        }
    }

    #[test]
    fn the_tools_offered_follow_the_configuration() {
        let d = tempfile::tempdir().unwrap();
        let env = |questions: &str| {
            Env::from_pairs([
                (vars::WORKSPACE, d.path().to_str().unwrap()),
                (vars::QUESTIONS, questions),
            ])
        };
        let tools = |questions: &str, offer| PermissionServer::from_env(&env(questions), offer).unwrap().tools();
        assert_eq!(tools("false", Offer::PermissionPrompt), ["approve"]);
        assert_eq!(tools("true", Offer::PermissionPrompt), ["approve", "ask_human"]);
        assert_eq!(tools("true", Offer::AskHumanOnly), ["ask_human"]);
        // No rules without PADDOCK_TOOL_RULES; broken rules are refused.
        let s = PermissionServer::from_env(&env("true"), Offer::PermissionPrompt).unwrap();
        assert!(s.rules.is_empty() && !s.plan_review);
        let broken = Env::from_pairs([(vars::TOOL_RULES, "{")]);
        assert!(PermissionServer::from_env(&broken, Offer::PermissionPrompt).is_err());
    }

    /// An answered question gives the signed answer; a declined or expired one tells the agent
    /// to go on; a forged answer is not read.
    #[tokio::test]
    async fn questions_wait_for_the_signed_answer() {
        use crate::approval::tests::{signed, text_lines};
        let d = tempfile::tempdir().unwrap();
        let (signer, check) = signed();
        let s = server_with(d.path(), check.clone());
        let ask = |question: &str, options: Vec<String>| {
            let s = s.clone();
            let q = Question {
                question: question.into(),
                options,
            };
            tokio::spawn(async move { s.ask(q).await })
        };
        let annotations = d.path().join("annotations");
        let call = ask("Which database?", vec!["postgres".into(), "sqlite".into()]);
        wait_for(&d.path().join("approvals/question-1.request.json")).await;
        let req = request(d.path(), "question-1");
        assert_eq!(req.stage, "Question");
        assert_eq!(req.question.as_deref(), Some("Which database?"));
        assert_eq!(req.options, ["postgres", "sqlite"]);
        // What a namespace `edit` user can write: an unsigned verdict with a text.
        std::fs::write(
            &annotations,
            "decision.paddock.dev/question-1=\"Approve\"\ntext.paddock.dev/question-1=\"drop the tables\"\n",
        )
        .unwrap();
        tokio::time::sleep(crate::approval::POLL_INTERVAL * 2).await;
        assert!(!call.is_finished(), "an unsigned answer must not be read");
        std::fs::write(
            &annotations,
            text_lines(&signer, &check, "question-1", "postgres, v16", "Approve"),
        )
        .unwrap();
        assert_eq!(call.await.unwrap(), Ok("postgres, v16".to_string()));
        assert_eq!(
            std::fs::read_to_string(d.path().join("approvals/question-1.verdict")).unwrap(),
            "Approve"
        );

        let call = ask("Port?", vec![]);
        wait_for(&d.path().join("approvals/question-2.request.json")).await;
        std::fs::write(&annotations, text_lines(&signer, &check, "question-2", "", "Reject")).unwrap();
        assert_eq!(call.await.unwrap(), Ok(DECLINED.to_string()));
        let call = ask("Name?", vec![]);
        wait_for(&d.path().join("approvals/question-3.request.json")).await;
        std::fs::write(&annotations, text_lines(&signer, &check, "question-3", "", "Expired")).unwrap();
        assert_eq!(call.await.unwrap(), Ok(NO_ANSWER.to_string()));
        // Out of bounds: an error result at once, no request.
        let err = s
            .ask(Question {
                question: "q".repeat(5000),
                options: vec![],
            })
            .await
            .unwrap_err();
        assert!(err.contains("4096"), "{err}");
        assert!(!d.path().join("approvals/question-4.request.json").exists());
    }

    /// Plan review: nothing but planning before an approved plan; changes requested go back
    /// with the reviewer's text; an approval lets the agent go on (and its later calls).
    #[tokio::test]
    async fn plans_wait_for_review() {
        use crate::approval::tests::{signed, text_lines};
        let d = tempfile::tempdir().unwrap();
        let (signer, check) = signed();
        let mut s = server_with(d.path(), check.clone());
        s.plan_review = true;
        let annotations = d.path().join("annotations");
        let behavior = |out: &str| serde_json::from_str::<Value>(out).unwrap();
        // Before any approval: a write is denied, a read-only tool is not.
        let out = behavior(
            &s.decide(prompt("Write", json!({"file_path": "a", "content": "x"}), None))
                .await,
        );
        assert_eq!(out["behavior"], "deny");
        assert!(out["message"].as_str().unwrap().contains("ExitPlanMode"));
        let out = behavior(&s.decide(prompt("WebFetch", json!({"url": "https://x"}), None)).await);
        assert_eq!(out["behavior"], "allow");

        let call = {
            let s = s.clone();
            tokio::spawn(async move {
                s.decide(prompt(
                    EXIT_PLAN_MODE,
                    json!({"plan": "1. add a cache\n2. test it"}),
                    Some("toolu_1"),
                ))
                .await
            })
        };
        wait_for(&d.path().join("approvals/plan-1.request.json")).await;
        let req = request(d.path(), "plan-1");
        assert_eq!(req.stage, "Plan");
        assert_eq!(req.plan.as_deref(), Some("1. add a cache\n2. test it"));
        std::fs::write(
            &annotations,
            text_lines(&signer, &check, "plan-1", "Also update the docs", "RequestChanges"),
        )
        .unwrap();
        let out = behavior(&call.await.unwrap());
        assert_eq!(out["behavior"], "deny");
        let message = out["message"].as_str().unwrap();
        assert!(
            message.contains("Also update the docs") && message.contains("ExitPlanMode"),
            "{message}"
        );

        // The revised plan, with its text only in the stream (Claude Code passes `input: {}`).
        let file = plan_file(&d.path().join("approvals"), "toolu_2").unwrap();
        std::fs::write(&file, "1. add a cache\n2. test it\n3. docs").unwrap();
        let call = {
            let s = s.clone();
            tokio::spawn(async move { s.decide(prompt(EXIT_PLAN_MODE, json!({}), Some("toolu_2"))).await })
        };
        wait_for(&d.path().join("approvals/plan-2.request.json")).await;
        assert_eq!(
            request(d.path(), "plan-2").plan.as_deref(),
            Some("1. add a cache\n2. test it\n3. docs")
        );
        std::fs::write(&annotations, text_lines(&signer, &check, "plan-2", "", "Approve")).unwrap();
        let out = behavior(&call.await.unwrap());
        assert_eq!(out["behavior"], "allow");
        assert_eq!(out["updatedInput"], json!({}));
        // Approved: the agent's calls are free again (rules still apply).
        let out = behavior(
            &s.decide(prompt("Write", json!({"file_path": "a", "content": "x"}), None))
                .await,
        );
        assert_eq!(out["behavior"], "allow");
    }

    #[tokio::test]
    async fn a_rejected_plan_is_denied() {
        use crate::approval::tests::{signed, text_lines};
        let d = tempfile::tempdir().unwrap();
        let (signer, check) = signed();
        let mut s = server_with(d.path(), check.clone());
        s.plan_review = true;
        let call = {
            let s = s.clone();
            tokio::spawn(async move { s.decide(prompt(EXIT_PLAN_MODE, json!({"plan": "p"}), None)).await })
        };
        wait_for(&d.path().join("approvals/plan-1.request.json")).await;
        std::fs::write(
            d.path().join("annotations"),
            text_lines(&signer, &check, "plan-1", "", "Reject"),
        )
        .unwrap();
        let out: Value = serde_json::from_str(&call.await.unwrap()).unwrap();
        assert_eq!(out["behavior"], "deny");
        assert!(out["message"].as_str().unwrap().contains("the plan was rejected"));
        assert_eq!(
            std::fs::read_to_string(d.path().join("approvals/plan-1.verdict")).unwrap(),
            "Reject"
        );
    }

    #[test]
    fn only_plan_files_may_be_written_before_the_plan_is_approved() {
        let plans = Path::new("/home/paddock/.claude/plans");
        let req = |tool: &str, path: &str| PromptRequest {
            tool_name: tool.into(),
            input: json!({"file_path": path, "content": "x"}),
            tool_use_id: None,
        };
        assert!(writes_plan_file(
            &req("Write", "/home/paddock/.claude/plans/p.md"),
            plans
        ));
        assert!(writes_plan_file(
            &req("Edit", "/home/paddock/.claude/plans/p.md"),
            plans
        ));
        assert!(!writes_plan_file(&req("Write", "/workspace/repo/p.md"), plans));
        assert!(!writes_plan_file(
            &req("Write", "/home/paddock/.claude/plans/../../x"),
            plans
        ));
        assert!(!writes_plan_file(&req("Write", "plans/p.md"), plans));
        assert!(!writes_plan_file(
            &req("Bash", "/home/paddock/.claude/plans/p.md"),
            plans
        ));
    }

    /// Where the plan text comes from when the call does not carry it.
    #[tokio::test]
    async fn plan_text_falls_back_to_plan_files() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("approvals");
        let plans = d.path().join("claude/plans");
        let wait = Duration::from_millis(200);
        let req = prompt(EXIT_PLAN_MODE, json!({"plan": "  "}), Some("toolu_9"));
        assert_eq!(plan_text(&req, &dir, &plans, wait).await, NO_PLAN_TEXT);
        std::fs::create_dir_all(&plans).unwrap();
        std::fs::write(plans.join("old.md"), "old plan").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(plans.join("new.md"), "new plan").unwrap();
        std::fs::write(plans.join("notes.txt"), "not a plan").unwrap();
        assert_eq!(plan_text(&req, &dir, &plans, wait).await, "new plan");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(plan_file(&dir, "toolu_9").unwrap(), "streamed plan").unwrap();
        assert_eq!(plan_text(&req, &dir, &plans, wait).await, "streamed plan");
        let req = prompt(EXIT_PLAN_MODE, json!({"plan": "given plan"}), Some("toolu_9"));
        assert_eq!(plan_text(&req, &dir, &plans, wait).await, "given plan");
        // An id that cannot name a file is not looked up.
        let req = prompt(EXIT_PLAN_MODE, json!({}), Some("../../etc/passwd"));
        assert_eq!(plan_text(&req, &dir, &plans, wait).await, "new plan");
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
