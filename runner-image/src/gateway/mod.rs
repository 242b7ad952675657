//! `paddock-runner gateway` — the native sidecar (an init container with
//! `restartPolicy: Always`), in the pod's trusted zone: it serves push requests
//! ([`push::PushService`]) and, when the pod routes model APIs or restricts egress, the proxy on
//! the pod's loopback that holds the model keys, meters usage, enforces budgets and records the
//! transcript ([`proxy`], [`meter`]).
//!
//! Env: `PADDOCK_REPO_URL`, `PADDOCK_BRANCH` (pushed as `refs/heads/$PADDOCK_BRANCH`),
//! optional `PADDOCK_PUSH` (`false` refuses every request), `PADDOCK_PUSH_APPROVAL` (`true`: a
//! push waits for the operator's signed BeforePush verdict, checked with
//! `PADDOCK_VERDICT_PUBLIC_KEY` against `PADDOCK_NAMESPACE`, `PADDOCK_RUN`, `PADDOCK_RUN_UID`,
//! `PADDOCK_ATTEMPT`), `PADDOCK_DECISIONS_FILE`, `PADDOCK_TRUSTED_DIR` (where the clone step
//! recorded the base commit), `PADDOCK_REDACT_ENV`; credentials as in [`crate::gitcreds`]; `PADDOCK_GATEWAY_STATE_DIR` (default `$TMPDIR`) for its private
//! scratch repository. It must not share that directory or `HOME` with the agent container.
//!
//! Exit: 0 on SIGTERM/SIGINT (the kubelet stops sidecars after the agent exits); 1 when its
//! configuration is invalid.

pub mod meter;
pub mod proxy;
pub mod push;
pub mod signals;

use paddock_crds::runner::vars;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::Env;
use crate::workspace::Workspace;

/// Errors that stop the gateway from starting.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Invalid configuration.
    #[error(transparent)]
    Push(#[from] push::PushConfigError),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// Invalid proxy settings.
    #[error(transparent)]
    Proxy(#[from] proxy::ProxyConfigError),
    /// The proxy could not start.
    #[error("model/egress proxy: {0}")]
    ProxyStart(String),
}

/// Runs the gateway's services until SIGTERM or SIGINT.
///
/// # Errors
/// [`GatewayError`] when it cannot start.
pub async fn serve(env: &Env) -> Result<(), GatewayError> {
    let ws = Workspace::from_env(env);
    let push = push::PushService::from_env(env, ws)?;
    // The model routes and the egress proxy, when the pod has any (proxy.rs).
    let cfg = proxy::ProxyConfig::from_env(env)?;
    // With an egress gateway the pod has no other way out: the proxy always runs, so that the
    // agent's HTTP(S)_PROXY reaches the outside through the run's allowlist.
    let proxy_task = if cfg.routes.is_empty() && cfg.egress.is_none() && cfg.uplink.is_none() {
        None
    } else {
        let p = proxy::Proxy::new(cfg).map_err(GatewayError::ProxyStart)?;
        Some(tokio::spawn(async move {
            if let Err(e) = p.serve().await {
                eprintln!("paddock-runner gateway: the proxy stopped: {e}");
            }
        }))
    };
    let mut term = signal(SignalKind::terminate()).map_err(GatewayError::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(GatewayError::Signals)?;
    eprintln!(
        "paddock-runner gateway: serving push requests for branch {}",
        push.branch()
    );
    tokio::select! {
        _ = push.run() => {},
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
    if let Some(t) = proxy_task {
        t.abort();
    }
    // Stopped: the kubelet stops this sidecar once the agent container has ended, so the branch
    // is final and no agent process can change it any more.
    tokio::task::block_in_place(|| push.report_final());
    Ok(())
}

/// In a warm pod: waits for the claim, clones as the `clone` container would, and records the
/// outcome for the agent container ([`crate::warm`]). `None` when the pod was stopped while
/// idle.
async fn claim_and_clone(env: Env) -> Option<Env> {
    let (tx, mut term) = tokio::sync::watch::channel(false);
    if let (Ok(mut t), Ok(mut i)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        tokio::spawn(async move {
            tokio::select! {
                _ = t.recv() => {},
                _ = i.recv() => {},
            }
            let _ = tx.send(true);
            std::future::pending::<()>().await;
        });
    }
    // Only the operator's signed claim: its settings decide where the pool's credentials go.
    let key = env
        .get(paddock_crds::verdict::PUBLIC_KEY_ENV)
        .unwrap_or_default()
        .to_string();
    // The operator pushes the claim here as soon as its PATCH has committed it
    // (crate::warm::push); the annotation, projected later by the kubelet, counts as well.
    let listener = match crate::warm::push::bind(crate::warm::push::CLAIM_PORT).await {
        Ok(l) => Some(l),
        Err(e) => {
            eprintln!(
                "paddock-runner gateway: cannot listen for the claim on port {}: {e}; waiting for the annotation",
                crate::warm::push::CLAIM_PORT
            );
            None
        }
    };
    let claimed = crate::warm::wait_signed_claim(&crate::warm::annotations_file(&env), &key, listener, &mut term).await;
    let claim = match claimed? {
        Ok(c) => c,
        Err(e) => {
            // The agent container reports the same error as the run's result; a claim it
            // cannot judge (unsigned) ends its wait for a clone that will not happen.
            eprintln!("paddock-runner gateway: {e}");
            if e == crate::warm::ClaimError::Unsigned {
                let ws = Workspace::from_env(&env);
                let _ = std::fs::create_dir_all(ws.control());
                let _ = crate::warm::write_clone_done(&ws, 1);
            }
            return None;
        }
    };
    let ws = Workspace::from_env(&env);
    // The agent container takes its part from here as soon as it is verified.
    if let Err(e) = crate::warm::write_claim(&ws, &claim) {
        eprintln!("paddock-runner gateway: cannot hand the claim to the agent container: {e}");
    }
    let mut trusted = claim.trusted;
    // The clone's failure line goes where the agent container looks for it.
    trusted.insert(
        vars::TERMINATION_LOG.into(),
        crate::warm::clone_result_file(&ws).to_string_lossy().into_owned(),
    );
    let env = env.with_overlay(&trusted);
    let _ = std::fs::create_dir_all(ws.control());
    let cloned = {
        let env = env.clone();
        tokio::task::spawn_blocking(move || crate::clone::run(&env, std::io::stdout()))
            .await
            .unwrap_or(1)
    };
    if let Err(e) = crate::warm::write_clone_done(&ws, cloned) {
        eprintln!("paddock-runner gateway: cannot record the clone's outcome: {e}");
    }
    Some(env)
}

/// The tokio runtime of a long-running subcommand (`gateway`, `egress`): two worker threads;
/// `None`, after saying why on stderr as `paddock-runner <name>: …`, when it cannot start.
pub fn runtime(name: &str) -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("paddock-runner {name}: cannot start the runtime: {e}");
            None
        }
    }
}

/// Entry point of `paddock-runner gateway`: isolates libgit2 from the agent-writable `HOME`,
/// (in a warm pod: waits for the claim and clones), runs [`serve`] and returns the exit code.
pub fn command() -> i32 {
    let env = Env::from_process();
    if let Err(e) = push::isolate_git_config(&env) {
        eprintln!("paddock-runner gateway: {e}");
        return 1;
    }
    let Some(rt) = runtime("gateway") else {
        return 1;
    };
    let env = if crate::warm::is_warm(&env) {
        match rt.block_on(claim_and_clone(env)) {
            Some(env) => env,
            None => return 0,
        }
    } else {
        env
    };
    match rt.block_on(serve(&env)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("paddock-runner gateway: {e}");
            1
        }
    }
}
