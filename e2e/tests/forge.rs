//! End-to-end with a real forge (issue 20, docs/triggers.md): Gitea (e2e/forge.sh, a host
//! process built from the Go module proxy) next to the local cluster.
//! - A run with `output.pullRequest` opens exactly one pull request from its pushed branch,
//!   with the receipt, and links it in its status; an operator that loses the record of it
//!   (the state a crash between opening it and writing the status leaves) finds and updates
//!   the same pull request instead of opening another.
//! - A webhook trigger: labelling an issue in Gitea (Gitea's own signed delivery) creates one
//!   run from the template with the issue's text, which opens a pull request, and the issue
//!   gets a comment with the outcome and the link. A command from a user not allowed creates
//!   nothing; a bad signature is refused (401) and counted; the same delivery twice creates one
//!   run.
//!
//! The test talks to Gitea with curl (its REST API as documented), not with Paddock's client.

use anyhow::{bail, Context as _, Result};
use paddock_crds::{AgentRun, AgentRunTrigger, Phase};
use paddock_e2e::{env, phase, TestNs};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

struct Forge {
    url: String,
    user: String,
    token: String,
}

impl Forge {
    fn from_env() -> Result<Forge> {
        Ok(Forge {
            url: env("PADDOCK_E2E_FORGE_URL")?,
            user: env("PADDOCK_E2E_FORGE_USER")?,
            token: env("PADDOCK_E2E_FORGE_TOKEN")?,
        })
    }

    /// One API call as `auth` (`token <t>`, or `basic user:password`); the answer's status and JSON.
    fn call_as(&self, auth: &str, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value)> {
        let mut c = Command::new("curl");
        c.args(["-sS", "--max-time", "20", "-X", method, "-w", "\n%{http_code}"])
            .args(["-H", "Content-Type: application/json"]);
        match auth.split_once(' ') {
            Some(("basic", up)) => c.args(["-u", up]),
            _ => c.args(["-H", &format!("Authorization: {auth}")]),
        };
        if let Some(b) = body {
            c.args(["-d", &b.to_string()]);
        }
        let out = c.arg(format!("{}/api/v1{path}", self.url)).output()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let (json, code) = text.rsplit_once('\n').context("curl printed no status")?;
        let code: u16 = code
            .trim()
            .parse()
            .with_context(|| format!("status of {method} {path}: {text}"))?;
        Ok((code, serde_json::from_str(json).unwrap_or(Value::Null)))
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let (code, v) = self.call_as(&format!("token {}", self.token), method, path, body)?;
        if !(200..300).contains(&code) {
            bail!("{method} {path}: {code} {v}");
        }
        Ok(v)
    }

    /// A new repository with a README on `main`; its clone URL.
    fn repo(&self, name: &str) -> Result<String> {
        let r = self.call(
            "POST",
            "/user/repos",
            Some(json!({"name": name, "auto_init": true, "default_branch": "main", "readme": "Default"})),
        )?;
        Ok(r["clone_url"].as_str().context("clone_url")?.to_string())
    }

    fn pulls(&self, repo: &str) -> Result<Vec<Value>> {
        let v = self.call(
            "GET",
            &format!("/repos/{}/{repo}/pulls?state=all&limit=50", self.user),
            None,
        )?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }
}

/// A pool and the credentials Secret (`token`) that both pushes and opens the pull request.
/// The test forge serves plain HTTP, so the pool lists it in `output.plainHTTPHosts` (without
/// it, the clone and the operator refuse to send the token: see the unit tests).
async fn setup(ns: &TestNs, forge: &Forge) -> Result<()> {
    let host = forge
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    ns.pool_with("default", json!({"output": {"plainHTTPHosts": [host]}}))
        .await?;
    ns.secret("forge", "token", &forge.token).await?;
    Ok(())
}

#[tokio::test]
async fn a_run_opens_one_pull_request_with_its_receipt() -> Result<()> {
    let forge = Forge::from_env()?;
    let ns = TestNs::new("pr").await?;
    setup(&ns, &forge).await?;
    let repo = format!("{}-pr", ns.name);
    let clone_url = forge.repo(&repo)?;
    forge.call(
        "POST",
        &format!("/repos/{}/{repo}/labels", forge.user),
        Some(json!({"name": "agent", "color": "#0366d6"})),
    )?;
    ns.apply::<AgentRun>(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "metadata": {"name": "greet"},
        "spec": {"repo": {"url": clone_url, "credentialsSecretRef": {"name": "forge"}},
                 "agent": {"name": "shell"}, "prompt": "echo hello > hello.txt",
                 "output": {"push": true, "pullRequest": {"provider": "gitea", "base": "main", "labels": ["agent"],
                                                           "body": "Made by $(run.name): $(diffstat)"}}},
    }))
    .await?;
    let runs = ns.api::<AgentRun>();
    let has_pr = |r: &AgentRun| {
        r.status
            .as_ref()
            .and_then(|s| s.result.as_ref())
            .and_then(|r| r.pull_request.as_ref())
            .is_some()
    };
    let run = ns
        .wait_run("greet", Duration::from_secs(180), "linked to its pull request", has_pr)
        .await?;
    assert_eq!(phase(&run), Some(Phase::Succeeded), "{:?}", run.status);
    let linked = run
        .status
        .as_ref()
        .unwrap()
        .result
        .as_ref()
        .unwrap()
        .pull_request
        .clone()
        .unwrap();
    let uid = run.metadata.uid.clone().unwrap();
    let pulls = forge.pulls(&repo)?;
    assert_eq!(pulls.len(), 1, "{pulls:#?}");
    let pr = &pulls[0];
    assert_eq!(pr["head"]["ref"], "paddock/greet");
    assert_eq!(pr["base"]["ref"], "main");
    assert_eq!(pr["number"].as_u64(), Some(linked.number));
    assert_eq!(pr["html_url"].as_str(), Some(linked.url.as_str()));
    assert_eq!(pr["labels"][0]["name"], "agent", "{pr}");
    let body = pr["body"].as_str().unwrap_or_default();
    for want in [
        "Made by greet: +1/-0",
        "### Paddock receipt",
        &format!("| Run | `{}/greet` (uid `{uid}`) |", ns.name),
        "| Agent | `shell` |",
        "| Changes | +1/-0 in 1 file(s) |",
        "| Approvals | none required |",
        &format!("<!-- paddock:run={uid} -->"),
    ] {
        assert!(body.contains(want), "{want:?} not in the pull request's body:\n{body}");
    }
    // The branch on the forge has the agent's file.
    let file = forge.call(
        "GET",
        &format!("/repos/{}/{repo}/contents/hello.txt?ref=paddock/greet", forge.user),
        None,
    )?;
    assert_eq!(file["name"], "hello.txt");
    ns.wait_events("greet", &["PullRequestOpened"], Duration::from_secs(20))
        .await?;

    // The record lost (as after a crash between opening it and writing the status): the
    // operator finds the open pull request for the branch and updates it; still one.
    runs.patch_status(
        "greet",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Json::<()>(serde_json::from_value(json!([
            {"op": "remove", "path": "/status/result/pullRequest"}
        ]))?),
    )
    .await?;
    let run = ns
        .wait_run("greet", Duration::from_secs(60), "linked again", |r| {
            has_pr(r)
                && paddock_e2e::condition(r, "PullRequest")
                    .is_some_and(|(s, reason, _)| s == "True" && reason == "Updated")
        })
        .await?;
    let again = run.status.unwrap().result.unwrap().pull_request.unwrap();
    assert_eq!(again, linked, "the same pull request");
    assert_eq!(forge.pulls(&repo)?.len(), 1, "no second pull request");
    ns.cleanup().await;
    Ok(())
}

/// The ClusterIP and port of the chart's webhook receiver Service.
fn receiver() -> Result<String> {
    let out = Command::new("kubectl")
        .args(["-n", "paddock-system", "get", "service", "paddock-webhooks", "-o"])
        .arg("jsonpath={.spec.clusterIP}:{.spec.ports[0].port}")
        .output()?;
    let s = String::from_utf8(out.stdout)?;
    if !out.status.success() || s.starts_with(':') {
        bail!("no webhook Service: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(s)
}

/// Posts a delivery to the receiver as a forge would: `X-Gitea-Event`, `X-Gitea-Delivery`,
/// and the signature given. Returns the HTTP status.
fn deliver(url: &str, event: &str, id: &str, signature: &str, body: &str) -> Result<u16> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
        ])
        .args([
            "-H",
            "Content-Type: application/json",
            "-H",
            &format!("X-Gitea-Event: {event}"),
        ])
        .args([
            "-H",
            &format!("X-Gitea-Delivery: {id}"),
            "-H",
            &format!("X-Gitea-Signature: {signature}"),
        ])
        .args(["--data-binary", body, url])
        .output()?;
    Ok(String::from_utf8(out.stdout)?.trim().parse()?)
}

fn hmac_hex(secret: &str, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    ring::hmac::sign(&key, body.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn trigger_runs(ns: &TestNs) -> Result<Vec<String>> {
    let mut names: Vec<String> = ns
        .api::<AgentRun>()
        .list(&kube::api::ListParams::default().labels("paddock.dev/trigger=issues"))
        .await?
        .items
        .into_iter()
        .filter_map(|r| r.metadata.name)
        .collect();
    names.sort();
    Ok(names)
}

/// The receiver's count of deliveries with `result`, read from the operator's /metrics via the
/// API server's pod proxy.
fn deliveries(result: &str) -> Result<f64> {
    let pods = Command::new("kubectl")
        .args([
            "-n",
            "paddock-system",
            "get",
            "pods",
            "-l",
            "app.kubernetes.io/name=paddock",
            "-o",
        ])
        .arg("jsonpath={.items[*].metadata.name}")
        .output()?;
    let mut total = 0.0;
    for pod in String::from_utf8(pods.stdout)?.split_whitespace() {
        let out = Command::new("kubectl")
            .args([
                "get",
                "--raw",
                &format!("/api/v1/namespaces/paddock-system/pods/{pod}:8080/proxy/metrics"),
            ])
            .output()?;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if line.starts_with("paddock_webhook_deliveries_total{") && line.contains(&format!("result=\"{result}\"")) {
                total += line.rsplit(' ').next().unwrap_or("0").parse::<f64>().unwrap_or(0.0);
            }
        }
    }
    Ok(total)
}

#[tokio::test]
async fn an_issue_label_becomes_a_run_a_pull_request_and_a_comment() -> Result<()> {
    let forge = Forge::from_env()?;
    let ns = TestNs::new("hook").await?;
    setup(&ns, &forge).await?;
    let secret = format!("hook-{}", ns.name);
    ns.secret("hook", "secret", &secret).await?;
    let repo = format!("{}-hook", ns.name);
    let clone_url = forge.repo(&repo)?;
    let web_url = clone_url.trim_end_matches(".git").to_string();
    let (owner, api) = (forge.user.clone(), format!("/repos/{}/{repo}", forge.user));
    forge.call(
        "POST",
        &format!("{api}/labels"),
        Some(json!({"name": "paddock", "color": "#00aabb"})),
    )?;
    ns.apply::<AgentRunTrigger>(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRunTrigger", "metadata": {"name": "issues"},
        "spec": {"webhook": {"provider": "gitea", "secretRef": {"name": "hook"}, "issueLabel": "paddock",
                             "command": "/paddock", "allowedUsers": [owner]},
                 "runTemplate": {"spec": {
                     "repo": {"url": clone_url, "credentialsSecretRef": {"name": "forge"}},
                     "agent": {"name": "shell"},
                     "prompt": "printf '%s\\n' \"$(issue.title)\" > issue.txt # #$(issue.number) $(comment.body)",
                     "output": {"push": true, "pullRequest": {"provider": "gitea", "base": "main"}}}}},
    }))
    .await?;
    let receiver = receiver()?;
    let hook_url = format!("http://{receiver}/hooks/{}/issues", ns.name);
    forge.call(
        "POST",
        &format!("{api}/hooks"),
        Some(
            json!({"type": "gitea", "active": true, "events": ["issues", "issue_comment"],
                    "config": {"url": hook_url, "content_type": "json", "secret": secret}}),
        ),
    )?;

    // Label an issue in Gitea: Gitea's own delivery starts the run.
    let issue = forge.call(
        "POST",
        &format!("{api}/issues"),
        Some(json!({"title": "Add a greeting", "body": "hello.txt please"})),
    )?;
    let number = issue["number"].as_u64().context("issue number")?;
    forge.call(
        "POST",
        &format!("{api}/issues/{number}/labels"),
        Some(json!({"labels": ["paddock"]})),
    )?;
    let run_name = format!("issues-i{number}");
    let t0 = Instant::now();
    while ns.api::<AgentRun>().get_opt(&run_name).await?.is_none() {
        if t0.elapsed() > Duration::from_secs(60) {
            let hooks = forge.call("GET", &format!("{api}/hooks"), None)?;
            ns.dump().await;
            bail!("no run {run_name} 60 s after labelling; hooks {hooks}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let run = ns
        .wait_run(&run_name, Duration::from_secs(180), "linked to its pull request", |r| {
            r.status
                .as_ref()
                .and_then(|s| s.result.as_ref())
                .and_then(|r| r.pull_request.as_ref())
                .is_some()
        })
        .await?;
    assert_eq!(phase(&run), Some(Phase::Succeeded), "{:?}", run.status);
    assert_eq!(
        run.spec.prompt.as_deref(),
        Some(format!("printf '%s\\n' \"Add a greeting\" > issue.txt # #{number} ").as_str())
    );
    let ann = run.metadata.annotations.clone().unwrap_or_default();
    assert_eq!(
        ann.get("paddock.dev/issue-url").map(String::as_str),
        Some(format!("{web_url}/issues/{number}").as_str())
    );
    assert!(ann.contains_key("paddock.dev/delivery"), "{ann:?}");
    let pr = run.status.clone().unwrap().result.unwrap().pull_request.unwrap();
    let file = forge.call("GET", &format!("{api}/contents/issue.txt?ref=paddock/{run_name}"), None)?;
    assert_eq!(file["name"], "issue.txt");

    // The issue hears back: the outcome and the pull request's link, once.
    let t0 = Instant::now();
    let comment = loop {
        let comments = forge.call("GET", &format!("{api}/issues/{number}/comments"), None)?;
        let ours: Vec<String> = comments
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["body"].as_str().map(str::to_string))
            .filter(|b| b.contains("paddock:run="))
            .collect();
        if let Some(c) = ours.first() {
            assert_eq!(ours.len(), 1, "{ours:#?}");
            break c.clone();
        }
        if t0.elapsed() > Duration::from_secs(60) {
            ns.dump().await;
            bail!("no comment on issue #{number}: {comments}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    assert!(comment.contains(": Succeeded**"), "{comment}");
    assert!(comment.contains(&pr.url), "{comment}");
    ns.wait_events("issues", &["RunCreated", "IssueCommented"], Duration::from_secs(30))
        .await?;

    // A command from a user who is not in allowedUsers: Gitea delivers it, nothing starts.
    let ignored_before = deliveries("ignored")?;
    let stranger = format!("s{}", &ns.name[ns.name.len() - 8..]);
    forge.call(
        "POST",
        "/admin/users",
        Some(
            json!({"username": stranger, "email": format!("{stranger}@paddock.invalid"),
                    "password": "stranger-password-1", "must_change_password": false}),
        ),
    )?;
    let (code, v) = forge.call_as(
        &format!("basic {stranger}:stranger-password-1"),
        "POST",
        &format!("{api}/issues/{number}/comments"),
        Some(json!({"body": "/paddock delete everything"})),
    )?;
    assert_eq!(code, 201, "{v}");
    let t0 = Instant::now();
    while deliveries("ignored")? <= ignored_before {
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("the stranger's comment was not delivered and ignored");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        trigger_runs(&ns).await?,
        vec![run_name.clone()],
        "the stranger started nothing"
    );

    // A delivery signed with another secret is refused (401) and counted.
    let refused_before = deliveries("refused")?;
    let body = json!({
        "action": "created", "sender": {"login": owner},
        "repository": {"html_url": web_url},
        "issue": {"number": number, "title": "Add a greeting", "body": "", "html_url": format!("{web_url}/issues/{number}")},
        "comment": {"id": 900_000_000u64 + u64::from(std::process::id()), "body": "/paddock one more"},
    })
    .to_string();
    let code = deliver(
        &hook_url,
        "issue_comment",
        "forged-1",
        &hmac_hex("not-the-secret", &body),
        &body,
    )?;
    assert_eq!(code, 401);
    let code = deliver(&hook_url, "issue_comment", "forged-2", "", &body)?;
    assert_eq!(code, 401, "unsigned");
    assert!(deliveries("refused")? >= refused_before + 2.0);
    assert_eq!(trigger_runs(&ns).await?, vec![run_name.clone()]);

    // The same signed delivery twice: one run.
    let sig = hmac_hex(&secret, &body);
    assert_eq!(deliver(&hook_url, "issue_comment", "replayed-1", &sig, &body)?, 201);
    assert_eq!(deliver(&hook_url, "issue_comment", "replayed-1", &sig, &body)?, 200);
    let runs = trigger_runs(&ns).await?;
    assert_eq!(runs.len(), 2, "{runs:?}");
    // A delivery for an unknown trigger is 404.
    let code = deliver(
        &format!("http://{receiver}/hooks/{}/nope", ns.name),
        "issue_comment",
        "x",
        &sig,
        &body,
    )?;
    assert_eq!(code, 404);
    let extra = runs.into_iter().find(|r| *r != run_name).unwrap();
    let extra = ns.wait_finished(&extra, Duration::from_secs(180)).await?;
    assert_eq!(phase(&extra), Some(Phase::Succeeded), "{:?}", extra.status);
    ns.cleanup().await;
    Ok(())
}
