//! `paddock-runner`: see the library documentation ([`paddock_runner`]) for the pod contract.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use clap::{Parser, Subcommand};

/// The program inside Paddock's runner pod. All configuration comes from the environment.
#[derive(Parser, Debug)]
#[command(name = "paddock-runner", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Init container `clone`: clone PADDOCK_REPO_URL and add the worktree on PADDOCK_BRANCH.
    Clone,
    /// Container `agent`: run the agent CLI, commit, diff, request the push, report the result.
    Run,
    /// Sidecar `gateway`: hold the git credentials and serve push requests until SIGTERM.
    Gateway,
    /// The pool's egress gateway (Deployment `<pool>-egress`): the proxy that is the runner
    /// pods' only way out, for callers with the pool's token.
    Egress,
    /// MCP server (stdio), a child of the agent CLI: `approve`, Claude Code's
    /// --permission-prompt-tool (gates tool calls that match PADDOCK_TOOL_RULES, and the plan
    /// when PADDOCK_PLAN_REVIEW=true, on an ApprovalGate), and `ask_human` when
    /// PADDOCK_QUESTIONS=true.
    PermissionPrompt {
        /// Offer only `ask_human` (for CLIs without a permission prompt, e.g. Gemini CLI).
        #[arg(long)]
        ask_human_only: bool,
    },
    /// Print the version.
    Version,
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Clone => paddock_runner::clone::command(),
        Command::Run => paddock_runner::run::command(),
        Command::Gateway => paddock_runner::gateway::command(),
        Command::Egress => paddock_runner::egress::command(),
        Command::PermissionPrompt { ask_human_only } => paddock_runner::mcp::command(if ask_human_only {
            paddock_runner::mcp::Offer::AskHumanOnly
        } else {
            paddock_runner::mcp::Offer::PermissionPrompt
        }),
        Command::Version => {
            let (major, minor, rev) = git2::Version::get().libgit2_version();
            println!(
                "paddock-runner {} (libgit2 {major}.{minor}.{rev})",
                paddock_runner::VERSION
            );
            0
        }
    };
    std::process::exit(code);
}
