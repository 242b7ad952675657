//! The systems compared, their controllers' processes (e2e/peers.sh) and client limits.

use crate::procfs::pids_named;
use anyhow::{bail, Context as _, Result};
use kube::api::{ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use serde_json::{json, Value};

/// The systems compared. `TektonTuned` is Tekton's controller restarted with the same client
/// limits the others get (`--qps`/`--burst`) and 32 workers per controller.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum System {
    Paddock,
    Tekton,
    TektonTuned,
    Sandbox,
}

impl System {
    pub fn parse(s: &str) -> Result<System> {
        Ok(match s {
            "paddock" => System::Paddock,
            "tekton" => System::Tekton,
            "tekton-tuned" => System::TektonTuned,
            "agent-sandbox" => System::Sandbox,
            _ => bail!("unknown system {s}: expected paddock, tekton, tekton-tuned or agent-sandbox"),
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            System::Paddock => "paddock",
            System::Tekton => "tekton",
            System::TektonTuned => "tekton-tuned",
            System::Sandbox => "agent-sandbox",
        }
    }

    /// The custom resource the benchmark creates.
    pub fn resource(self) -> ApiResource {
        let (g, v, k, plural) = match self {
            System::Paddock => ("paddock.dev", "v1alpha1", "AgentRun", "agentruns"),
            System::Tekton | System::TektonTuned => ("tekton.dev", "v1", "TaskRun", "taskruns"),
            System::Sandbox => ("agents.x-k8s.io", "v1beta1", "Sandbox", "sandboxes"),
        };
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, k), plural)
    }

    /// One object: the smallest unit of work of the system, its pod on the kwok node.
    pub fn manifest(self, name: &str) -> Value {
        let ar = self.resource();
        let placement = json!({
            "nodeSelector": {"type": "kwok"},
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
        });
        let spec = match self {
            System::Paddock => json!({
                "repo": {"url": "git://10.244.0.1/bench.git"},
                "agent": {"name": "shell"},
                "prompt": "true",
                "runnerPoolRef": {"name": "kwok"},
            }),
            System::Tekton | System::TektonTuned => json!({
                "taskSpec": {"steps": [{"name": "run", "image": "localhost/paddock/busybox:1", "script": "true"}]},
                "podTemplate": placement,
            }),
            System::Sandbox => {
                let mut pod = placement.clone();
                pod["containers"] = json!([{"name": "agent", "image": "localhost/paddock/busybox:1", "command": ["sleep", "infinity"]}]);
                json!({"podTemplate": {"spec": pod}})
            }
        };
        json!({"apiVersion": ar.api_version, "kind": ar.kind, "metadata": {"name": name}, "spec": spec})
    }

    /// Whether the object has finished its work (Sandbox: is Ready).
    pub fn finished(self, obj: &DynamicObject) -> bool {
        let status = &obj.data["status"];
        match self {
            // Both set status.completionTime when the run ends, whatever the outcome.
            System::Paddock | System::Tekton | System::TektonTuned => !status["completionTime"].is_null(),
            System::Sandbox => status["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True")),
        }
    }
}

/// Runs e2e/peers.sh with `args`.
pub fn peers(args: &[&str]) -> Result<String> {
    peers_with_env(args, &[])
}

/// Runs e2e/peers.sh with `args` and the environment variables `env` (e.g.
/// `PADDOCK_KWOK_NODES`); returns what it printed on stdout.
pub fn peers_with_env(args: &[&str], env: &[(&str, &str)]) -> Result<String> {
    let out = std::process::Command::new("bash")
        .arg("e2e/peers.sh")
        .args(args)
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("e2e/peers.sh")?;
    if !out.status.success() {
        bail!("e2e/peers.sh {} failed", args.join(" "));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Client-side limits of the tuned peers. Paddock's kube-rs client has no client-side rate
/// limit and agent-sandbox's default (`--kube-api-qps -1`) is none either, so the default here
/// is none for all (`qps` 0): Tekton tuned gets limits too high to bind (5,000 QPS / 10,000
/// burst after its doubling) and agent-sandbox its default; the API server's priority and
/// fairness is the only bound. With `--qps Q --burst B`, Tekton tuned and agent-sandbox get Q/B
/// and Paddock still none.
pub struct Limits {
    pub qps: u32,
    pub burst: u32,
    /// Tekton tuned: workers per reconciler (`-threads-per-controller`; default 2).
    pub threads: u32,
}

/// Makes the controller under test the only one of its kind running with the right flags.
pub fn prepare(sys: System, l: &Limits) -> Result<()> {
    let threads = l.threads.to_string();
    match sys {
        System::Paddock => {}
        System::Tekton => {
            peers(&["start", "tekton"])?;
        }
        System::TektonTuned => {
            // Tekton's main doubles both after parsing (cmd/controller/main.go: "multiply by 2,
            // no of controllers being created"), so half of each gives the limits asked for.
            let (qps, burst) = if l.qps == 0 {
                (2500, 5000)
            } else {
                ((l.qps / 2).max(1), (l.burst / 2).max(1))
            };
            peers(&[
                "start",
                "tekton",
                "--qps",
                &qps.to_string(),
                "--burst",
                &burst.to_string(),
                "--threads",
                &threads,
            ])?;
        }
        System::Sandbox if l.qps == 0 => {
            peers(&["start", "agent-sandbox"])?;
        }
        System::Sandbox => {
            peers(&[
                "start",
                "agent-sandbox",
                "--qps",
                &l.qps.to_string(),
                "--burst",
                &l.burst.to_string(),
            ])?;
        }
    }
    Ok(())
}

/// The PID of the controller process of `sys` on this machine: Paddock's operator container
/// (the only process named `paddock-operator`; one replica), a peer's host process.
pub fn controller_pid(sys: System) -> Result<u32> {
    if sys != System::Paddock {
        let name = if sys == System::Sandbox {
            "agent-sandbox"
        } else {
            "tekton"
        };
        return peers(&["pid", name])?.parse().context("e2e/peers.sh pid");
    }
    let found = pids_named("paddock-operator")?;
    match found.as_slice() {
        [pid] => Ok(*pid),
        _ => bail!("expected one paddock-operator process, found {found:?} (scale the chart to 1 replica)"),
    }
}

pub fn gvk(g: &str, v: &str, k: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, k), plural)
}
