//! End-to-end for `kubectl paddock console` (issue 18) in a real browser: Debian's `chromium`,
//! headless, driven through `chromedriver` (WebDriver, the `fantoccini` crate), against the
//! real binary (`target/debug/kubectl-paddock console`) and runs on the local cluster.
//!
//! The console acts with the kubeconfig it is given. Alice and mallory each get a kubeconfig with
//! a client certificate of their own (CN = the user), signed by the cluster through a
//! CertificateSigningRequest, so the API server authenticates every request of the console as
//! that user: RBAC and the approval admission policy judge alice and mallory, not the admin.
//!
//! One test, one browser, one namespace, four runs at once:
//! 1. `push` (BeforePush, approver alice): the inbox shows it with its diff; Approve as alice
//!    records `approver: alice@example.com`, the branch is pushed, and the run page (open in
//!    another window) turns Succeeded without a reload.
//! 2. `guarded` (BeforePush, approver alice): mallory's Approve shows the admission policy's
//!    refusal; the gate stays Pending without decisions.
//! 3. `live` (a shell that prints markers while it runs): the lag from the runner's timestamp
//!    of an event to its entry appearing in the page's timeline, printed (and at most 1 s).
//! 4. `hostile` (a custom agent printing HTML/JS in a message, a tool call's name and input,
//!    a file name and the diff): nothing runs — no `<img>` or extra `<script>` in the DOM, no
//!    alert — and the text is shown as text.
//!
//! Screenshots of every page go to `docs/console/` (referenced by docs/console.md).
//! Needs `chromium` and `chromium-driver` (e2e/lib.sh `ensure_host_deps` installs them).

use anyhow::{anyhow, bail, Context as _, Result};
use fantoccini::{Client as Browser, ClientBuilder, Locator};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, Patch, PatchParams, PostParams};
use paddock_crds::{AgentRun, ApprovalGate, GateState, Phase, RunMessage};
use paddock_e2e::{phase, GitRepo, TestNs};
use serde_json::json;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RUN_TIMEOUT: Duration = Duration::from_secs(180);
const ALICE: &str = "alice@example.com";
const MALLORY: &str = "mallory@example.com";
/// What the hostile agent prints; each `alert(n)` would fire if any of it became markup.
const XSS_MESSAGE: &str = r#"<script>alert(1)</script>"><img src=x onerror=alert(2)>"#;
const XSS_TOOL: &str = r#"<img src=x onerror=alert(5)>"#;
const XSS_INPUT: &str = r#"{"command":"</pre><script>alert(6)</script>"}"#;
const XSS_FILE: &str = r#""><img src=x onerror=alert(3)>.txt"#;
const XSS_DIFF: &str = r#"<script>alert(4)</script><img src=x onerror=alert(7)>"#;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run_manifest(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun", "metadata": {"name": name}, "spec": spec})
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The plugin binary, (re)built with `cargo build -p kubectl-paddock` (quick when up to date).
fn plugin_binary() -> Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let st = Command::new(env!("CARGO"))
        .args(["build", "-q", "-p", "kubectl-paddock"])
        .current_dir(repo_root())
        .status()
        .context("running cargo build -p kubectl-paddock")?;
    let bin = target.join("debug").join("kubectl-paddock");
    if !st.success() || !bin.exists() {
        bail!(
            "cargo build -p kubectl-paddock failed ({st}); {} missing",
            bin.display()
        );
    }
    Ok(bin)
}

/// A kubeconfig for `user` with a client certificate of their own: a key and CSR made with
/// `openssl`, signed by the cluster through a `CertificateSigningRequest`
/// (`kubernetes.io/kube-apiserver-client`, approved by the suite's admin), the suite's cluster
/// entry otherwise; written to a file in `dir`.
async fn kubeconfig_for(client: &kube::Client, user: &str, dir: &std::path::Path) -> Result<PathBuf> {
    use base64::Engine as _;
    use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
    let short = user.split('@').next().unwrap_or(user);
    let key = dir.join(format!("{short}.key"));
    let csr = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
        ])
        .arg(&key)
        .args(["-subj", &format!("/CN={user}")])
        .output()?;
    anyhow::ensure!(
        csr.status.success(),
        "openssl req: {}",
        String::from_utf8_lossy(&csr.stderr)
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    let name = format!("paddock-e2e-console-{short}-{}", std::process::id());
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let _ = api.delete(&name, &Default::default()).await;
    api.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
            "metadata": {"name": name},
            "spec": {"request": b64.encode(&csr.stdout), "signerName": "kubernetes.io/kube-apiserver-client",
                     "usages": ["client auth"], "expirationSeconds": 3600}
        }))?,
    )
    .await?;
    api.patch_approval(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"conditions": [{"type": "Approved", "status": "True",
            "reason": "PaddockE2E", "message": "the console test's user"}]}})),
    )
    .await?;
    let t0 = std::time::Instant::now();
    let cert = loop {
        if let Some(c) = api.get(&name).await?.status.and_then(|s| s.certificate) {
            break c.0;
        }
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(60), "CSR {name} was not signed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let _ = api.delete(&name, &Default::default()).await;
    let path = std::env::var("KUBECONFIG").context("KUBECONFIG is not set")?;
    let mut kc: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&path)?)?;
    let users = kc
        .get_mut("users")
        .and_then(|u| u.as_sequence_mut())
        .ok_or_else(|| anyhow!("{path}: no users"))?;
    for u in users {
        if let Some(m) = u.get_mut("user").and_then(|x| x.as_mapping_mut()) {
            m.clear();
            m.insert("client-certificate-data".into(), b64.encode(&cert).into());
            m.insert("client-key-data".into(), b64.encode(std::fs::read(&key)?).into());
        }
    }
    let out = dir.join(format!("kubeconfig-{short}"));
    std::fs::write(&out, serde_yaml::to_string(&kc)?)?;
    Ok(out)
}

/// Starts `kubectl paddock console -n <ns> --no-open` with `kubeconfig`; returns it and the URL
/// it printed (with the token).
fn start_console(kubeconfig: &std::path::Path, ns: &str) -> Result<(Proc, String)> {
    let mut child = Command::new(plugin_binary()?)
        .args(["console", "-n", ns, "--no-open"])
        .env("KUBECONFIG", kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting kubectl-paddock console")?;
    let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
    let proc = Proc(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    eprintln!("console: {}", line.trim());
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .ok_or_else(|| anyhow!("the console printed no URL: {line:?}"))?
        .to_string();
    Ok((proc, url))
}

/// The origin (`http://127.0.0.1:<port>`) of a console URL.
fn origin(url: &str) -> String {
    url.split('/').take(3).collect::<Vec<_>>().join("/")
}

/// chromedriver on a free port and a headless chromium session through it.
async fn browser() -> Result<(Proc, Browser)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let driver = Proc(
        Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver (apt-get install chromium chromium-driver)")?,
    );
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--window-size=1400,1000", "--hide-scrollbars"]}),
    );
    let t0 = Instant::now();
    loop {
        match ClientBuilder::native()
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => return Ok((driver, c)),
            Err(e) if t0.elapsed() > Duration::from_secs(20) => bail!("no WebDriver session: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Evaluates `js` (a function body that returns a value) until it returns true.
async fn wait_js(b: &Browser, js: &str, timeout: Duration, what: &str) -> Result<()> {
    let t0 = Instant::now();
    loop {
        if b.execute(js, vec![]).await?.as_bool() == Some(true) {
            return Ok(());
        }
        if t0.elapsed() > timeout {
            let text = b
                .execute("return document.body ? document.body.innerText : ''", vec![])
                .await?;
            bail!(
                "timed out after {timeout:?} waiting for {what}; page text:\n{}",
                text.as_str().unwrap_or("")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn text_of(b: &Browser, css: &str) -> Result<String> {
    Ok(b.find(Locator::Css(css)).await?.text().await?)
}

/// Saves a screenshot of the current page as `docs/console/<name>.png`.
async fn screenshot(b: &Browser, name: &str) -> Result<()> {
    let dir = repo_root().join("docs").join("console");
    std::fs::create_dir_all(&dir)?;
    let png = b.screenshot().await?;
    std::fs::write(dir.join(format!("{name}.png")), png)?;
    eprintln!("screenshot docs/console/{name}.png");
    Ok(())
}

/// No alert, confirm or prompt is open.
async fn assert_no_dialog(b: &Browser) -> Result<()> {
    match b.get_alert_text().await {
        Ok(t) => bail!("a dialog fired: {t:?}"),
        Err(_) => Ok(()),
    }
}

/// A namespace where alice and mallory hold `edit` (which the chart extends to gates).
async fn setup() -> Result<(TestNs, GitRepo)> {
    let ns = TestNs::new("console").await?;
    let repo = GitRepo::create(&format!("{}-r", ns.name), &[("a.txt", "a\n")])?;
    ns.pool("default", None).await?;
    let user = |name: &str| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name});
    ns.apply::<RoleBinding>(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "editors"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [user(ALICE), user(MALLORY)],
    }))
    .await?;
    // Gates by a Role of their own too, as in tests/hostile.rs (not only through aggregation).
    ns.apply::<Role>(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "gate-deciders"},
        "rules": [{"apiGroups": ["paddock.dev"], "resources": ["approvalgates"], "verbs": ["get", "list", "watch", "patch"]}],
    }))
    .await?;
    ns.apply::<RoleBinding>(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "gate-deciders"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "gate-deciders"},
        "subjects": [user(ALICE), user(MALLORY)],
    }))
    .await?;
    Ok((ns, repo))
}

fn hostile_script() -> String {
    let line = |v: serde_json::Value| format!("printf '%s\\n' '{}'\n", v.to_string().replace('\'', r"'\''"));
    let mut s = String::new();
    s += &line(json!({"type": "message", "text": XSS_MESSAGE}));
    s += &line(json!({"type": "tool_call", "id": "t1", "name": XSS_TOOL, "input": XSS_INPUT}));
    s += &line(json!({"type": "tool_result", "id": "t1", "output": XSS_MESSAGE}));
    s += &format!(
        "printf '%s\\n' '{}' > '{}'\n",
        XSS_DIFF,
        XSS_FILE.replace('\'', r"'\''")
    );
    s += &format!("printf '%s\\n' '{XSS_DIFF}' >> a.txt\n");
    s
}

#[tokio::test]
async fn console_in_a_real_browser() -> Result<()> {
    let (ns, repo) = setup().await?;
    let n = ns.name.clone();
    let gated = |prompt: &str| {
        json!({"repo": {"url": repo.url}, "agent": {"name": "shell"}, "prompt": prompt,
               "output": {"push": true}, "approvals": {"beforePush": {"approvers": {"users": [ALICE]}}}})
    };
    ns.apply::<AgentRun>(run_manifest("push", gated("echo reviewed > reviewed.txt")))
        .await?;
    ns.apply::<AgentRun>(run_manifest("guarded", gated("echo guarded > guarded.txt")))
        .await?;
    ns.apply::<AgentRun>(run_manifest(
        "live",
        json!({"repo": {"url": repo.url}, "agent": {"name": "shell"},
               "prompt": "sleep 5; i=1; while [ $i -le 120 ]; do echo lag-marker-$i; i=$((i+1)); sleep 1; done; sleep 300"}),
    ))
    .await?;
    ns.apply::<AgentRun>(run_manifest(
        "hostile",
        json!({"repo": {"url": repo.url},
               "agent": {"name": "custom", "command": ["sh", "-c", hostile_script(), "hostile"], "output": "JSONLines"},
               "prompt": "be hostile"}),
    ))
    .await?;

    let tmp = std::env::temp_dir().join(format!("paddock-console-{n}"));
    std::fs::create_dir_all(&tmp)?;
    let (_alice_console, alice_url) = start_console(&kubeconfig_for(&ns.client, ALICE, &tmp).await?, &n)?;
    let (_mallory_console, mallory_url) = start_console(&kubeconfig_for(&ns.client, MALLORY, &tmp).await?, &n)?;
    let (alice, mallory) = (origin(&alice_url), origin(&mallory_url));
    let (_driver, b) = browser().await?;
    // A failed assertion panics inside `drive`: close the browser (chromedriver's chromium
    // outlives chromedriver) before the panic goes on.
    let result = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(drive(
        &ns,
        &repo,
        &b,
        (&alice_url, &alice),
        (&mallory_url, &mallory),
    )))
    .await;
    let _ = b.close().await;
    let result = match result {
        Ok(r) => r,
        Err(panic) => {
            ns.dump().await;
            std::panic::resume_unwind(panic)
        }
    };
    if result.is_err() {
        ns.dump().await;
    } else {
        ns.cleanup().await;
    }
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

async fn drive(
    ns: &TestNs,
    repo: &GitRepo,
    b: &Browser,
    (alice_url, alice): (&str, &str),
    (mallory_url, mallory): (&str, &str),
) -> Result<()> {
    // The token URL sets the console's cookie and redirects to the runs page.
    b.goto(alice_url).await?;
    wait_js(
        b,
        "return document.querySelector('#whoami') !== null",
        Duration::from_secs(20),
        "the runs page",
    )
    .await?;
    assert_eq!(text_of(b, "#whoami").await?, ALICE, "the console acts as alice");
    assert!(
        !b.current_url().await?.as_str().contains("token="),
        "the token leaves the URL"
    );
    b.goto(mallory_url).await?;
    assert_eq!(text_of(b, "#whoami").await?, MALLORY);

    // 3. The live timeline: lag from the runner's timestamp to the entry in the page.
    // The page opens before the pod runs: the console follows the pod's log once it starts, so
    // the markers (one a second, from 5 s into the agent) arrive live once the console follows
    // the log; the test waits for three printed after that.
    b.goto(&format!("{alice}/runs/{}/live", ns.name)).await?;
    wait_js(
        b,
        "return document.querySelectorAll('#timeline li[data-seq]').length > 0",
        RUN_TIMEOUT,
        "the first timeline entry",
    )
    .await?;
    let opened: f64 = b
        .execute("return Math.min(...[...document.querySelectorAll('#timeline li[data-seq]')].map(li => Number(li.dataset.seen)))", vec![])
        .await?
        .as_f64()
        .unwrap_or(f64::NAN);
    wait_js(
        b,
        "const all = [...document.querySelectorAll('#timeline li[data-seq]')];
         const opened = Math.min(...all.map(li => Number(li.dataset.seen)));
         return all.filter(li => li.innerText.includes('lag-marker-') && Date.parse(li.dataset.ts) > opened).length >= 3",
        Duration::from_secs(120),
        "three markers printed after the timeline began",
    )
    .await?;
    let lags = b
        .execute(
            "return [...document.querySelectorAll('#timeline li[data-seq]')]
               .filter(li => li.innerText.includes('lag-marker-'))
               .map(li => [Number(li.dataset.seen), Date.parse(li.dataset.ts)])",
            vec![],
        )
        .await?;
    let mut measured = Vec::new();
    for pair in lags.as_array().into_iter().flatten() {
        let (seen, ts) = (
            pair[0].as_f64().unwrap_or(f64::NAN),
            pair[1].as_f64().unwrap_or(f64::NAN),
        );
        if ts > opened {
            measured.push(seen - ts);
        }
    }
    eprintln!("console live timeline lag (runner timestamp → entry in the page), ms: {measured:?} (page opened at {opened}, markers [seen, ts]: {lags})");
    assert!(
        measured.len() >= 3,
        "markers printed after the page opened: {measured:?}"
    );
    let max = measured.iter().copied().fold(f64::MIN, f64::max);
    assert!(
        max < 1000.0,
        "an event took {max:.0} ms to reach the page: {measured:?}"
    );
    screenshot(b, "run-live").await?;

    // 2b. Talking to a run from its page: the message box creates a RunMessage in alice's own
    // name (the console acts as the user; the admission policy checks the sender). The `live`
    // run's shell agent takes no messages: the operator refuses it, and the page shows so.
    b.execute(
        "document.querySelector('#say-text').value = 'console says hi'; return true",
        vec![],
    )
    .await?;
    b.find(Locator::Css("form.say button[type=submit]"))
        .await?
        .click()
        .await?;
    let t0 = std::time::Instant::now();
    let sent = loop {
        let all = ns.api::<RunMessage>().list(&Default::default()).await?.items;
        if let Some(m) = all.into_iter().find(|m| m.spec.text == "console says hi") {
            break m;
        }
        if t0.elapsed() > Duration::from_secs(20) {
            anyhow::bail!("the console's message box created no RunMessage");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(sent.spec.sender, ALICE, "sent in alice's name");
    assert_eq!(sent.spec.run_ref.name, "live");
    wait_js(
        b,
        "const m = document.querySelector('#run-messages'); return !!m && m.innerText.includes('console says hi') && m.innerText.includes('NotSupported')",
        Duration::from_secs(60),
        "the message, refused, in the run's page",
    )
    .await?;

    // 1. Inbox → Approve as alice; the run page in another window turns Succeeded live.
    ns.wait_run("push", RUN_TIMEOUT, "awaiting the push approval", |r| {
        phase(r) == Some(Phase::AwaitingApproval)
    })
    .await?;
    b.goto(&format!("{alice}/runs/{}/push", ns.name)).await?;
    wait_js(
        b,
        "return document.querySelector('#phase')?.innerText === 'AwaitingApproval'",
        Duration::from_secs(20),
        "the run page",
    )
    .await?;
    b.execute("window.__notReloaded = 42; return true", vec![]).await?;
    let run_window = b.window().await?;
    let inbox_window = b.new_window(false).await?.handle;
    b.switch_to_window(inbox_window.clone()).await?;
    b.goto(&format!("{alice}/inbox")).await?;
    let card = "article.card[data-gate='push-push']";
    wait_js(
        b,
        &format!("return !!document.querySelector(\"{card} .d2h-file-name\") && document.querySelector(\"{card}\").innerText.includes('reviewed.txt')"),
        Duration::from_secs(20),
        "the push gate with its diff in the inbox",
    )
    .await?;
    screenshot(b, "inbox").await?;
    b.find(Locator::Css(&format!("{card} input[name=comment]")))
        .await?
        .send_keys("lgtm from the console")
        .await?;
    b.find(Locator::Css(&format!("{card} button.approve")))
        .await?
        .click()
        .await?;
    wait_js(
        b,
        // The answer shows in the card, until the live inbox drops the decided gate.
        &format!("return !!document.querySelector(\"{card} .decide-result .ok, {card} .decide-result .error\") || !document.querySelector(\"{card}\")"),
        Duration::from_secs(20),
        "the approval's answer",
    )
    .await?;
    let refused = b
        .execute(
            &format!("return document.querySelector(\"{card} .decide-result .error\")?.innerText ?? null"),
            vec![],
        )
        .await?;
    assert!(refused.is_null(), "alice's approval was refused: {refused}");
    let gate = ns.api::<ApprovalGate>().get("push-push").await?;
    let d = gate
        .spec
        .decisions
        .first()
        .ok_or_else(|| anyhow!("no decision recorded"))?;
    assert_eq!(
        (d.approver.as_str(), d.comment.as_deref()),
        (ALICE, Some("lgtm from the console"))
    );
    b.switch_to_window(run_window).await?;
    let t0 = Instant::now();
    wait_js(
        b,
        "return document.querySelector('#phase')?.innerText === 'Succeeded'",
        RUN_TIMEOUT,
        "the run page to show Succeeded",
    )
    .await?;
    eprintln!(
        "approve → run page shows Succeeded: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(
        b.execute("return window.__notReloaded", vec![]).await?,
        json!(42),
        "the page was not reloaded"
    );
    assert_eq!(repo.show("paddock/push", "reviewed.txt")?.trim(), "reviewed", "pushed");
    wait_js(
        b,
        "return !!document.querySelector('#diff .d2h-file-name')",
        Duration::from_secs(20),
        "the diff",
    )
    .await?;
    screenshot(b, "run").await?;
    b.switch_to_window(inbox_window).await?;
    b.close_window().await?;
    let handles = b.windows().await?;
    b.switch_to_window(handles.into_iter().next().ok_or_else(|| anyhow!("no window"))?)
        .await?;

    // 2. mallory's Approve shows the admission policy's refusal; the gate stays Pending.
    ns.wait_run("guarded", RUN_TIMEOUT, "awaiting the push approval", |r| {
        phase(r) == Some(Phase::AwaitingApproval)
    })
    .await?;
    b.goto(&format!("{mallory}/runs/{}/guarded", ns.name)).await?;
    let gate_css = "#run-gates .gate[data-gate='guarded-push']";
    wait_js(
        b,
        &format!("return !!document.querySelector(\"{gate_css} button.approve\")"),
        Duration::from_secs(20),
        "mallory's decide form",
    )
    .await?;
    // The live updates may swap the gate's card between a find and a click (a stale element):
    // find it again then.
    let mut tries = 0;
    loop {
        let clicked = async {
            b.find(Locator::Css(&format!("{gate_css} button.approve")))
                .await?
                .click()
                .await
        }
        .await;
        match clicked {
            Ok(_) => break,
            Err(e) if tries < 5 && e.to_string().contains("stale element") => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    wait_js(
        b,
        &format!("return !!document.querySelector(\"{gate_css} .decide-result .error\")"),
        Duration::from_secs(20),
        "the refusal",
    )
    .await?;
    let refusal = text_of(b, &format!("{gate_css} .decide-result .error")).await?;
    eprintln!("mallory's refusal, as shown: {refusal}");
    assert!(
        refusal.contains(&format!(
            "{MALLORY} is not an approver of this gate: spec.approvers lists users [{ALICE}]"
        )),
        "{refusal}"
    );
    screenshot(b, "refusal").await?;
    let gate = ns.api::<ApprovalGate>().get("guarded-push").await?;
    assert!(gate.spec.decisions.is_empty(), "{:?}", gate.spec.decisions);
    assert_eq!(gate.status.and_then(|s| s.state), Some(GateState::Pending));

    // 4. The hostile agent's HTML and JS run nowhere.
    let run = ns.wait_finished("hostile", RUN_TIMEOUT).await?;
    assert_eq!(phase(&run), Some(Phase::Succeeded), "{:?}", run.status);
    b.goto(&format!("{alice}/runs/{}/hostile", ns.name)).await?;
    wait_js(
        b,
        "return document.querySelector('#timeline').innerText.includes('alert(1)') && !!document.querySelector('#diff .d2h-file-name')",
        Duration::from_secs(30),
        "the hostile run's timeline and diff",
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_no_dialog(b).await?;
    let dom = b
        .execute(
            "return {imgs: document.querySelectorAll('img').length,
                     scripts: [...document.scripts].map(s => s.getAttribute('src')),
                     onerror: document.querySelectorAll('[onerror]').length,
                     text: document.body.innerText}",
            vec![],
        )
        .await?;
    assert_eq!(dom["imgs"], json!(0), "no <img> made it into the DOM");
    assert_eq!(dom["onerror"], json!(0), "no onerror attribute made it into the DOM");
    let scripts: Vec<&str> = dom["scripts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str())
        .collect();
    assert!(
        scripts.len() == 4 && scripts.iter().all(|s| s.starts_with("/assets/")),
        "only the console's own scripts: {scripts:?}"
    );
    let text = dom["text"].as_str().unwrap_or("");
    for shown in [
        XSS_MESSAGE,
        XSS_TOOL,
        "</pre><script>alert(6)</script>",
        "<img src=x onerror=alert(3)>.txt",
        "alert(4)",
    ] {
        assert!(text.contains(shown), "{shown:?} shown as text");
    }
    screenshot(b, "run-hostile").await?;

    // Screenshots of the other pages.
    b.goto(&format!("{alice}/")).await?;
    wait_js(
        b,
        "return document.querySelectorAll('table.runs tbody tr').length >= 4",
        Duration::from_secs(20),
        "the runs table",
    )
    .await?;
    let server_ms = b
        .execute(
            "return performance.getEntriesByType('navigation')[0].serverTiming.map(t => t.duration)[0]",
            vec![],
        )
        .await?;
    eprintln!("runs page ({} runs in the namespace) server time: {server_ms} ms", 4);
    screenshot(b, "runs").await?;
    b.goto(&format!("{alice}/pools")).await?;
    wait_js(
        b,
        "return !!document.querySelector('table.pools tbody tr')",
        Duration::from_secs(20),
        "the pools table",
    )
    .await?;
    screenshot(b, "pools").await?;
    b.goto(&format!("{alice}/new")).await?;
    for (field, value) in [
        ("name", "fix-typo"),
        ("repo", "https://git.example.com/team-a/service.git"),
        ("prompt", "Fix the typo in README.md."),
        ("approvers", ALICE),
    ] {
        b.find(Locator::Css(&format!("#new-run [name={field}]")))
            .await?
            .send_keys(value)
            .await?;
    }
    b.find(Locator::Css("#new-run [name=before_push]"))
        .await?
        .click()
        .await?;
    wait_js(b, "return document.querySelector('#yaml-preview').innerText.includes('fix-typo') && document.querySelector('#yaml-preview').innerText.includes('beforePush')", Duration::from_secs(10), "the YAML preview").await?;
    screenshot(b, "new-run").await?;
    assert_no_dialog(b).await?;

    let _ = ns
        .api::<AgentRun>()
        .patch(
            "live",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"cancel": true}})),
        )
        .await;
    Ok(())
}
