//! The pool's egress gateway (`paddock-runner egress`) and the trusted containers' uplink
//! through it, with the real binary, a real `git daemon` and real TCP: the clone and the push go
//! through the gateway over `git://`, the pod gateway's model calls through it over HTTP, and a
//! caller without the pool's token gets nothing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use git2::{Repository, Signature};

const BIN: &str = env!("CARGO_BIN_EXE_paddock-runner");
const BRANCH: &str = "paddock/r1";
const TOKEN: &str = "pool-token-123";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn wait_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the child when dropped.
struct Proc(Option<Child>);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Proc {
    /// SIGTERM, then the child's stdout.
    fn stop(mut self) -> String {
        let c = self.0.take().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let out = c.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

struct World {
    dir: tempfile::TempDir,
    git_port: u16,
    egress_port: u16,
    _daemon: Proc,
    egress: Option<Proc>,
}

fn sig() -> Signature<'static> {
    Signature::new("Origin", "origin@example.com", &git2::Time::new(1_700_000_000, 0)).unwrap()
}

impl World {
    /// A bare `origin.git` served by `git daemon` (receive-pack on), and the egress gateway.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let seed = dir.path().join("seed");
        let repo = Repository::init(&seed).unwrap();
        repo.set_head("refs/heads/main").unwrap();
        std::fs::write(seed.join("README.md"), "hello\n").unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new("README.md")).unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        repo.commit(Some("HEAD"), &sig(), &sig(), "initial", &tree, &[])
            .unwrap();
        let root = dir.path().join("srv");
        std::fs::create_dir_all(&root).unwrap();
        let st = Command::new("git")
            .args(["clone", "-q", "--bare"])
            .arg(&seed)
            .arg(root.join("origin.git"))
            .status()
            .unwrap();
        assert!(st.success());
        let git_port = free_port();
        let daemon = Command::new("git")
            .arg("daemon")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={git_port}"))
            .arg(format!("--base-path={}", root.display()))
            .args(["--export-all", "--enable=receive-pack", "--reuseaddr"])
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon");
        let daemon = Proc(Some(daemon));
        wait_port(git_port);
        let egress_port = free_port();
        let egress = Command::new(BIN)
            .arg("egress")
            .env_clear()
            .env("PADDOCK_EGRESS_TOKEN", TOKEN)
            .env("PADDOCK_EGRESS_LISTEN", format!("127.0.0.1:{egress_port}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let egress = Proc(Some(egress));
        wait_port(egress_port);
        Self {
            dir,
            git_port,
            egress_port,
            _daemon: daemon,
            egress: Some(egress),
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn git_url(&self) -> String {
        format!("git://127.0.0.1:{}/origin.git", self.git_port)
    }

    fn proxy(&self) -> String {
        format!("http://127.0.0.1:{}", self.egress_port)
    }

    fn cmd(&self, sub: &str, token: &str, extra: &[(&str, String)]) -> Command {
        let mut c = Command::new(BIN);
        c.arg(sub)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()))
            .env("HOME", self.path("home"))
            .env("PADDOCK_WORKSPACE", self.path("workspace"))
            .env("PADDOCK_TERMINATION_LOG", self.path("termination-log"))
            .env("PADDOCK_GIT_CREDENTIALS_DIR", self.path("no-creds"))
            .env("PADDOCK_BRANCH", BRANCH)
            .env("PADDOCK_RUN", "r1")
            .env("PADDOCK_NAMESPACE", "team-a")
            .env("PADDOCK_RUN_UID", "uid-r1")
            .env("PADDOCK_ATTEMPT", "1")
            .env("PADDOCK_TRUSTED_DIR", self.path("trusted"))
            .env("PADDOCK_REPO_URL", self.git_url())
            .env("PADDOCK_EGRESS_PROXY", self.proxy())
            .env("PADDOCK_EGRESS_TOKEN", token)
            .stdin(Stdio::null());
        for (k, v) in extra {
            c.env(k, v);
        }
        c
    }

    /// The egress gateway's summary line after SIGTERM: `(tunnels, requests, refused)`.
    fn summary(&mut self) -> (u64, u64, u64) {
        let out = self.egress.take().unwrap().stop();
        let line = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["type"] == "egress_summary")
            .unwrap_or_else(|| panic!("no summary in {out}"));
        let n = |k: &str| line[k].as_u64().unwrap();
        (n("tunnels"), n("requests"), n("refused"))
    }
}

#[test]
fn clone_and_push_go_through_the_egress_gateway_over_git_protocol() {
    let mut w = World::new();
    std::fs::create_dir_all(w.path("home")).unwrap();
    let out = w.cmd("clone", TOKEN, &[]).output().unwrap();
    assert!(
        out.status.success(),
        "clone through the egress gateway failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(w.path("workspace/work/README.md").exists());

    // The agent's commit, pushed by the pod gateway through the egress gateway.
    let work = Repository::open(w.path("workspace/work")).unwrap();
    std::fs::write(w.path("workspace/work/new.txt"), "new\n").unwrap();
    let mut index = work.index().unwrap();
    index.add_path(Path::new("new.txt")).unwrap();
    let tree = work.find_tree(index.write_tree().unwrap()).unwrap();
    let parent = work.head().unwrap().peel_to_commit().unwrap();
    let commit = work
        .commit(Some("HEAD"), &sig(), &sig(), "agent", &tree, &[&parent])
        .unwrap();
    let gw = w
        .cmd(
            "gateway",
            TOKEN,
            &[("PADDOCK_GATEWAY_STATE_DIR", w.path("gw").display().to_string())],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let gw = Proc(Some(gw));
    let control = w.path("workspace/.paddock");
    std::fs::create_dir_all(&control).unwrap();
    std::fs::write(control.join("push-request"), commit.to_string()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !control.join("push-result").exists() {
        assert!(Instant::now() < deadline, "no push result");
        std::thread::sleep(Duration::from_millis(100));
    }
    let result = std::fs::read_to_string(control.join("push-result")).unwrap();
    assert!(result.contains("\"ok\":true"), "{result}");
    drop(gw.stop());
    let origin = Repository::open_bare(w.path("srv/origin.git")).unwrap();
    assert_eq!(origin.refname_to_id(&format!("refs/heads/{BRANCH}")).unwrap(), commit);
    let (tunnels, _, refused) = w.summary();
    assert!(tunnels >= 2, "the clone and the push each opened a tunnel: {tunnels}");
    assert_eq!(refused, 0);
}

#[test]
fn a_caller_without_the_pools_token_gets_nothing() {
    let mut w = World::new();
    std::fs::create_dir_all(w.path("home")).unwrap();
    // The clone step with a wrong token: refused, nothing cloned.
    let out = w.cmd("clone", "not-the-token", &[]).output().unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("refused the tunnel"), "{stdout}");
    assert!(!w.path("workspace/work/README.md").exists());

    // What an agent's own socket gets: a CONNECT or a plain request without credentials.
    for req in [
        format!("CONNECT 127.0.0.1:{} HTTP/1.1\r\nHost: x\r\n\r\n", w.git_port),
        format!("GET http://127.0.0.1:{}/ HTTP/1.1\r\nHost: x\r\n\r\n", w.git_port),
        format!(
            "CONNECT 127.0.0.1:{} HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic cGFkZG9jazp3cm9uZw==\r\n\r\n",
            w.git_port
        ),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", w.egress_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap();
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("HTTP/1.1 407"), "{req:?} → {answer}");
    }
    let (tunnels, requests, refused) = w.summary();
    assert_eq!((tunnels, requests), (0, 0), "nothing was forwarded");
    assert!(refused >= 4, "{refused}");
}

#[test]
fn what_the_agent_asks_for_never_reaches_loopback_or_the_metadata_address() {
    let mut w = World::new();
    let auth = "Proxy-Authorization: Basic cGFkZG9jazpwb29sLXRva2VuLTEyMw==\r\n"; // paddock:pool-token-123
    let ask = |extra: &str, target: &str| -> String {
        let mut s = TcpStream::connect(("127.0.0.1", w.egress_port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "CONNECT {target} HTTP/1.1\r\nHost: x\r\n{auth}{extra}\r\n").unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let git = format!("127.0.0.1:{}", w.git_port);
    // A trusted container's tunnel (the clone, the push) may go where the pool says, but
    // never to a metadata address (a run's own repository or model URL pointing there).
    assert!(ask("", &git).starts_with("HTTP/1.1 200"));
    for target in [
        "169.254.169.254:80",
        "[fd00:ec2::254]:80",
        "[::ffff:169.254.169.254]:80",
    ] {
        let answer = ask("", target);
        assert!(answer.starts_with("HTTP/1.1 403"), "trusted {target}: {answer}");
    }
    // The same on the agent's behalf (the pod gateway's header): loopback and the cloud
    // metadata address are refused, by address after resolving (a name pointing there too).
    let agent = "paddock-egress-class: agent\r\n";
    for target in [git.as_str(), "169.254.169.254:80", "localhost:9418", "[::1]:80"] {
        let answer = ask(agent, target);
        assert!(answer.starts_with("HTTP/1.1 403"), "{target}: {answer}");
    }
    let (tunnels, _, refused) = w.summary();
    assert_eq!(tunnels, 1, "only the trusted tunnel was opened");
    assert!(refused >= 7, "{refused}");
}

/// A one-shot HTTP upstream answering an Anthropic-shaped message; returns its port and the
/// request it saw.
fn upstream() -> (u16, std::thread::JoinHandle<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 4096];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            req.extend_from_slice(&buf[..n]);
        }
        let body = r#"{"id":"m1","type":"message","role":"assistant","model":"claude-test","content":[{"type":"text","text":"ok"}],"stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":2}}"#;
        let _ = write!(
            s,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        String::from_utf8_lossy(&req).into_owned()
    });
    (port, h)
}

#[test]
fn the_pod_gateways_model_calls_go_through_the_egress_gateway() {
    let mut w = World::new();
    std::fs::create_dir_all(w.path("home")).unwrap();
    std::fs::create_dir_all(w.path("workspace/source")).unwrap();
    Repository::init(w.path("workspace/source")).unwrap();
    let (up, seen) = upstream();
    let gw_port = free_port();
    let gw = w
        .cmd(
            "gateway",
            TOKEN,
            &[
                ("PADDOCK_GATEWAY_STATE_DIR", w.path("gw").display().to_string()),
                ("PADDOCK_GATEWAY_ADDR", format!("127.0.0.1:{gw_port}")),
                ("PADDOCK_UPSTREAM_ANTHROPIC", format!("http://127.0.0.1:{up}")),
                ("ANTHROPIC_API_KEY", "sk-real".into()),
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let gw = Proc(Some(gw));
    wait_port(gw_port);
    let body = r#"{"model":"claude-test","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    let mut s = TcpStream::connect(("127.0.0.1", gw_port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "POST /anthropic/v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: placeholder\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let req = seen.join().unwrap();
    assert!(
        req.contains("x-api-key: sk-real"),
        "the upstream got the real key: {req}"
    );
    drop(gw.stop());
    let (_, requests, refused) = w.summary();
    assert_eq!(requests, 1, "the model call went through the egress gateway");
    assert_eq!(refused, 0);
}
