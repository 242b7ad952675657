//! `paddock-runner`: the one program inside a Paddock runner pod.
//!
//! The operator builds the pod; this crate implements the runner's side of that contract. The
//! pod has two trust zones that share only the `workspace` volume (an emptyDir mounted at
//! `/workspace`, overridable with `PADDOCK_WORKSPACE` for tests). Every container runs as uid
//! 1000 with `HOME=/home/paddock` and `/tmp` as emptyDirs; the root filesystem may be read-only.
//!
//! | container | command | trust | module |
//! |---|---|---|---|
//! | init `clone` | `paddock-runner clone` | trusted, holds git credentials | [`clone`] |
//! | native sidecar `gateway` | `paddock-runner gateway` | trusted, holds git credentials | [`gateway`] |
//! | main `agent` | `paddock-runner run` | untrusted, no credentials | [`run`] |
//! | (child of Claude Code or Gemini CLI) | `paddock-runner permission-prompt` | untrusted | [`mcp`] |
//! | the pool's `<pool>-egress` Deployment | `paddock-runner egress` | trusted, outside the runner pods | [`egress`] |
//!
//! A pool's warm pods (`PADDOCK_WARM=true`) have no `clone` container: the gateway clones once
//! the pod is claimed, and every setting that depends on the run arrives in a pod annotation
//! instead of the environment ([`warm`]).
//!
//! Workspace layout (see [`workspace::Workspace`]):
//! - `/workspace/source` — the clone (a non-bare repository with no checkout of its own); the
//!   run's branch `refs/heads/$PADDOCK_BRANCH` lives here.
//! - `/workspace/work` — a git worktree of `source` on the run's branch; the agent works here.
//! - `/workspace/.paddock/` — control files: `base-commit` (the commit the run started from),
//!   `push-request` (the commit SHA the agent side asks the gateway to push) and `push-result`
//!   (`{"ok":bool,"message":str,"commit":str}` written by the gateway).
//!
//! Output: `clone` and `run` print only [`paddock_crds::events::EventLine`]s on stdout, one JSON
//! object per line, `seq` from 1; every string is redacted of the run's secret values
//! ([`paddock_crds::events::redact`]) and truncated ([`paddock_crds::events::MAX_TEXT_BYTES`]).
//! `run` always ends with a `result` event and writes the same line (compact, at most 4096
//! bytes) to `/dev/termination-log` (`PADDOCK_TERMINATION_LOG` overrides the path); `clone`
//! does so only when it fails. Exit status: 0 when the run succeeded, 1 when it failed.
// `unsafe` only where libgit2 needs it: registering the git-over-CONNECT transport (uplink.rs).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod agent;
pub mod approval;
pub mod clone;
pub mod commit;
pub mod config;
pub mod diff;
pub mod egress;
pub mod emit;
pub mod env;
pub mod gateway;
pub mod gitcreds;
pub mod mcp;
pub mod messages;
pub mod push_request;
pub mod report;
pub mod run;
pub mod session;
pub mod telemetry;
pub mod toolrule;
pub mod trusted;
pub mod uplink;
pub mod warm;
pub mod workspace;

/// Version of this binary (the crate version).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
