//! Every `PADDOCK_*` environment variable of a runner pod: the names the operator sets and the
//! runner reads, in one place. They are grouped by the containers that may receive them
//! (docs/security.md, "Anatomy of a runner pod"):
//!
//! | group | containers | what |
//! |---|---|---|
//! | [trusted only](TRUSTED_ONLY) | `clone`, `gateway` (and a verification pod's `clone`) | where the repository is, how to reach it, what to apply |
//! | [gateway only](GATEWAY_ONLY) | `gateway` | model upstreams, budgets, prices, egress allowlist, secrets to redact, tuning |
//! | shared | every container | which run and attempt, branch, push, approvals, pod files |
//! | agent | `agent` | the agent CLI, its prompt and options |
//!
//! The `agent` container is hostile (DESIGN.md, "Trust boundary"): it never receives a name of
//! [`TRUSTED_ONLY`] or [`GATEWAY_ONLY`] ([`is_trusted_only`]), nor the model keys, which the
//! operator moves to the gateway. Variables the operator never sets (defaults and test hooks:
//! [`WORKSPACE`], [`TERMINATION_LOG`], [`GATEWAY_ADDR`] …) are listed too: a pool's template may
//! set them.

// ---- shared: every container of a run's pod ----

/// AgentRun name.
pub const RUN: &str = "PADDOCK_RUN";
/// AgentRun namespace.
pub const NAMESPACE: &str = "PADDOCK_NAMESPACE";
/// AgentRun UID: what a verdict is signed for ([`crate::verdict`]).
pub const RUN_UID: &str = "PADDOCK_RUN_UID";
/// Attempt number (1-based) the pod serves.
pub const ATTEMPT: &str = "PADDOCK_ATTEMPT";
/// The branch the run commits to (`spec.output.branch`, default `paddock/<run>`).
pub const BRANCH: &str = "PADDOCK_BRANCH";
/// `true`/`false`: whether the run pushes its branch (`spec.output.push`).
pub const PUSH: &str = "PADDOCK_PUSH";
/// `true` when the push waits for a signed `BeforePush` verdict (or a required verification);
/// absent otherwise.
pub const PUSH_APPROVAL: &str = "PADDOCK_PUSH_APPROVAL";
/// The downward API file of the pod's annotations, where verdicts and a warm pod's claim
/// appear ([`DECISIONS_FILE_PATH`]).
pub const DECISIONS_FILE: &str = "PADDOCK_DECISIONS_FILE";
/// Where the operator mounts the pod's annotations: the value of [`DECISIONS_FILE`].
pub const DECISIONS_FILE_PATH: &str = "/etc/paddock/pod/annotations";
/// `true` in a pool's warm pod (no `clone` container; the run's settings come by claim,
/// [`super::Claim`]).
pub const WARM: &str = "PADDOCK_WARM";
/// Comma-separated names of the variables whose values are secrets, to redact from everything
/// the container reports.
pub const REDACT_ENV: &str = "PADDOCK_REDACT_ENV";
/// The container's termination-message file (runner default `/dev/termination-log`).
pub const TERMINATION_LOG: &str = "PADDOCK_TERMINATION_LOG";
/// The shared workspace volume (runner default `/workspace`).
pub const WORKSPACE: &str = "PADDOCK_WORKSPACE";
/// The operator's verdict public key (base64), with which the pod checks verdicts and claims.
pub const VERDICT_PUBLIC_KEY: &str = crate::verdict::PUBLIC_KEY_ENV;

// ---- trusted only: `clone` and `gateway` ----

/// The repository URL (`spec.repo.url`).
pub const REPO_URL: &str = "PADDOCK_REPO_URL";
/// The revision to start from (`spec.repo.revision`; empty: the remote's HEAD).
pub const REVISION: &str = "PADDOCK_REVISION";
/// Comma-separated `host[:port]` the pool allows over plain `http://`
/// (`spec.output.plainHTTPHosts`).
pub const GIT_PLAIN_HTTP_HOSTS: &str = "PADDOCK_GIT_PLAIN_HTTP_HOSTS";
/// Where the git credentials Secret is mounted (runner default `/var/run/paddock/git`).
pub const GIT_CREDENTIALS_DIR: &str = "PADDOCK_GIT_CREDENTIALS_DIR";
/// The trusted containers' shared directory (runner default `/tmp/paddock-trusted`).
pub const TRUSTED_DIR: &str = "PADDOCK_TRUSTED_DIR";
/// A verification pod's `clone`: the gzip patch file to apply on the base commit.
pub const APPLY_PATCH: &str = "PADDOCK_APPLY_PATCH";
/// A verification pod's `clone`: the SHA-256 (hex) [`APPLY_PATCH`] must have.
pub const APPLY_PATCH_SHA256: &str = "PADDOCK_APPLY_PATCH_SHA256";
/// A verification pod's `clone`: why the change cannot be verified (the step fails with it).
pub const VERIFY_REFUSE: &str = "PADDOCK_VERIFY_REFUSE";
/// A verification pod's `clone`: the commit whose patch it applies (the gateway's reviewed
/// commit of a held push; the push verdict is signed for it).
pub const VERIFIED_COMMIT: &str = "PADDOCK_VERIFIED_COMMIT";
/// The pool's egress gateway address ([`crate::egress::PROXY_ENV`]).
pub const EGRESS_PROXY: &str = crate::egress::PROXY_ENV;
/// The pool's egress gateway token ([`crate::egress::TOKEN_ENV`]).
pub const EGRESS_TOKEN: &str = crate::egress::TOKEN_ENV;

// ---- gateway only ----

/// Prefix of a model route's upstream URL: `PADDOCK_UPSTREAM_<ROUTE>` ([`upstream`]).
pub const UPSTREAM_PREFIX: &str = "PADDOCK_UPSTREAM_";
/// `budget.maxCostUSD`, USD.
pub const MAX_COST_USD: &str = "PADDOCK_MAX_COST_USD";
/// `budget.maxOutputTokens`, tokens.
pub const MAX_OUTPUT_TOKENS: &str = "PADDOCK_MAX_OUTPUT_TOKENS";
/// The pool's `gateway.prices`: a JSON object of model prefix →
/// `{"input","output","cache_read","cache_write"}` (USD per million tokens).
pub const PRICES: &str = "PADDOCK_PRICES";
/// The run's egress allowlist: a JSON array of `{"host","ports"}`; absent: open.
pub const EGRESS_ALLOW: &str = "PADDOCK_EGRESS_ALLOW";
/// Prefix of the agent's own secrets the gateway redacts too: `PADDOCK_REDACT_VALUE_<n>`
/// ([`redact_value`]).
pub const REDACT_VALUE_PREFIX: &str = "PADDOCK_REDACT_VALUE_";
/// Where the gateway listens (runner default `127.0.0.1:15001`).
pub const GATEWAY_ADDR: &str = "PADDOCK_GATEWAY_ADDR";
/// The gateway's private state directory (runner default `$TMPDIR`).
pub const GATEWAY_STATE_DIR: &str = "PADDOCK_GATEWAY_STATE_DIR";
/// Largest request body to a model route, bytes.
pub const GATEWAY_MAX_BODY_BYTES: &str = "PADDOCK_GATEWAY_MAX_BODY_BYTES";
/// Model calls handled at once.
pub const GATEWAY_MAX_INFLIGHT: &str = "PADDOCK_GATEWAY_MAX_INFLIGHT";
/// Seconds a model call waits for a slot.
pub const GATEWAY_QUEUE_SECONDS: &str = "PADDOCK_GATEWAY_QUEUE_SECONDS";
/// Client connections open at once.
pub const GATEWAY_MAX_CONNECTIONS: &str = "PADDOCK_GATEWAY_MAX_CONNECTIONS";

// ---- agent ----

/// The agent CLI ([`crate::AgentName`] as text, e.g. `claude-code`).
pub const AGENT: &str = "PADDOCK_AGENT";
/// The prompt (`spec.prompt`, or the `spec.promptFrom` ConfigMap key).
pub const PROMPT: &str = "PADDOCK_PROMPT";
/// `spec.agent.model`.
pub const MODEL: &str = "PADDOCK_MODEL";
/// `spec.agent.command` (custom agents): a JSON array of strings.
pub const AGENT_COMMAND: &str = "PADDOCK_AGENT_COMMAND";
/// `spec.agent.output` (custom agents): `text` or `jsonl`.
pub const AGENT_OUTPUT: &str = "PADDOCK_AGENT_OUTPUT";
/// `spec.agent.args`: a JSON array of strings.
pub const AGENT_ARGS: &str = "PADDOCK_AGENT_ARGS";
/// `spec.repo.workdir`: the sub-directory the agent starts in.
pub const WORKDIR: &str = "PADDOCK_WORKDIR";
/// `spec.budget.maxTurns`.
pub const MAX_TURNS: &str = "PADDOCK_MAX_TURNS";
/// `spec.output.commitMessage`.
pub const COMMIT_MESSAGE: &str = "PADDOCK_COMMIT_MESSAGE";
/// `spec.approvals.toolUse.rules`: a JSON array of [`crate::ToolRule`].
pub const TOOL_RULES: &str = "PADDOCK_TOOL_RULES";
/// `true` when `spec.approvals.plan` asks for plan review (trusted containers and the agent):
/// the agent plans first; the gateway pushes only after a signed `plan-<n>` approval.
pub const PLAN_REVIEW: &str = "PADDOCK_PLAN_REVIEW";
/// `true` when `spec.approvals.questions` is set: the runner offers the CLI the MCP tool
/// `ask_human`.
pub const QUESTIONS: &str = "PADDOCK_QUESTIONS";
/// The pod's gateway (`http://127.0.0.1:15001`) when it serves the agent (model routes or
/// egress): the runner waits until it listens before it starts the CLI.
pub const GATEWAY_URL: &str = "PADDOCK_GATEWAY_URL";
/// Where a resumed session is mounted ([`RESUME_DIR_PATH`], `spec.resumeFrom`).
pub const RESUME_DIR: &str = "PADDOCK_RESUME_DIR";
/// Where the operator mounts a resumed session: the value of [`RESUME_DIR`].
pub const RESUME_DIR_PATH: &str = "/etc/paddock/resume";
/// The session id the runner passes to the CLI's process when it resumes one.
pub const RESUME_SESSION_ID: &str = "PADDOCK_RESUME_SESSION_ID";
/// Commit author and committer name (runner default `Paddock Agent`).
pub const GIT_AUTHOR_NAME: &str = "PADDOCK_GIT_AUTHOR_NAME";
/// Commit author and committer e-mail (runner default `agent@paddock.dev`).
pub const GIT_AUTHOR_EMAIL: &str = "PADDOCK_GIT_AUTHOR_EMAIL";
/// Seconds the agent side waits for the gateway's push result (runner default 120).
pub const PUSH_TIMEOUT_SECS: &str = "PADDOCK_PUSH_TIMEOUT_SECS";
/// The agent CLI's program (tests replay recorded streams with it).
pub const AGENT_BIN: &str = "PADDOCK_AGENT_BIN";
/// The runner's own program, for the MCP approval server it registers (default
/// `paddock-runner`).
pub const RUNNER_BIN: &str = "PADDOCK_RUNNER_BIN";

// ---- the pool's egress gateway (its own Deployment, not a runner pod) ----

/// Where `paddock-runner egress` listens (default `0.0.0.0:3128`).
pub const EGRESS_LISTEN: &str = "PADDOCK_EGRESS_LISTEN";

/// Names only the trusted containers may hold (besides the model keys and the names of
/// [`GATEWAY_ONLY`]).
pub const TRUSTED_ONLY: &[&str] = &[
    REPO_URL,
    REVISION,
    GIT_PLAIN_HTTP_HOSTS,
    GIT_CREDENTIALS_DIR,
    TRUSTED_DIR,
    APPLY_PATCH,
    APPLY_PATCH_SHA256,
    VERIFY_REFUSE,
    VERIFIED_COMMIT,
    EGRESS_PROXY,
    EGRESS_TOKEN,
];

/// Names only the `gateway` container may hold (with the prefixes [`UPSTREAM_PREFIX`] and
/// [`REDACT_VALUE_PREFIX`]).
pub const GATEWAY_ONLY: &[&str] = &[
    MAX_COST_USD,
    MAX_OUTPUT_TOKENS,
    PRICES,
    EGRESS_ALLOW,
    GATEWAY_STATE_DIR,
    GATEWAY_MAX_BODY_BYTES,
    GATEWAY_MAX_INFLIGHT,
    GATEWAY_QUEUE_SECONDS,
    GATEWAY_MAX_CONNECTIONS,
];

/// Whether `name` must never reach the agent container: a name of [`TRUSTED_ONLY`] or
/// [`GATEWAY_ONLY`], or one with the prefix [`UPSTREAM_PREFIX`] or [`REDACT_VALUE_PREFIX`].
pub fn is_trusted_only(name: &str) -> bool {
    TRUSTED_ONLY.contains(&name)
        || GATEWAY_ONLY.contains(&name)
        || name.starts_with(UPSTREAM_PREFIX)
        || name.starts_with(REDACT_VALUE_PREFIX)
}

/// `PADDOCK_UPSTREAM_<ROUTE>`: the upstream of the gateway's model route `route` (`anthropic`
/// → `PADDOCK_UPSTREAM_ANTHROPIC`).
pub fn upstream(route: &str) -> String {
    format!("{UPSTREAM_PREFIX}{}", route.to_uppercase())
}

/// `PADDOCK_REDACT_VALUE_<index>`: the gateway's copy of the agent's `index`-th secret
/// variable (0-based), whose value it redacts too.
pub fn redact_value(index: usize) -> String {
    format!("{REDACT_VALUE_PREFIX}{index}")
}
