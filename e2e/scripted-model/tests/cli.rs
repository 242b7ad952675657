//! Runs the `scripted-model` binary and drives it with raw HTTP and with the real agent CLIs.
//!
//! The CLI tests use the npm installs under `$PADDOCK_NPM_CLIS` (default
//! `$PADDOCK_CACHE/npm-clis`, cache default `/var/cache/paddock`, see README.md for the install command). When a CLI is not
//! installed the test prints a notice and passes, unless `SCRIPTED_MODEL_REQUIRE_CLIS=1`, which
//! makes it fail instead.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const HELLO: &str = "Hello from the scripted model\n";

/// A running server process, killed on drop; its stderr lines are collected in `log`.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(scripts: &Path, keepalive_ms: u64) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_scripted-model"))
            .args(["--listen", "127.0.0.1:0", "--scripts"])
            .arg(scripts)
            .args(["--keepalive-ms", &keepalive_ms.to_string()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start scripted-model");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("server exited before listening").unwrap();
            if let Some(rest) = line.split("listening on ").nth(1) {
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
        };
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("[server] {line}");
                sink.lock().unwrap().push(line);
            }
        });
        Server { child, addr, log }
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits up to 5 s for a log line containing `needle` (the reader thread may lag).
    fn assert_logged(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.log().iter().any(|l| l.contains(needle)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no server log line contains {needle:?}: {:#?}", self.log());
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo_scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts")
}

/// A fresh directory under the target dir (not /tmp: Codex dislikes CODEX_HOME under /tmp, and
/// the write-outside test needs /tmp to be "outside").
fn workdir(name: &str) -> tempfile::TempDir {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    std::fs::create_dir_all(base).unwrap();
    tempfile::Builder::new().prefix(name).tempdir_in(base).unwrap()
}

/// One HTTP/1.1 request with `Connection: close`; returns (status, raw body, possibly chunked).
fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, rest) = out.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, rest.to_string())
}

fn tools_anthropic() -> Value {
    json!([
        {"name": "Bash", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}},
        {"name": "Write", "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}, "content": {"type": "string"}}}},
    ])
}

#[test]
fn http_protocols_turns_errors_and_side_requests() {
    let server = Server::start(&repo_scripts(), 5000);
    let a = server.addr;
    assert_eq!(http(a, "GET", "/healthz", &[], ""), (200, "ok\n".to_string()));

    // Turn 0 of edit-file over non-streaming Messages: a Write tool_use.
    let body = json!({"model": "scripted-edit-file", "max_tokens": 100, "tools": tools_anthropic(),
                      "messages": [{"role": "user", "content": "go"}]});
    let (st, b) = http(
        a,
        "POST",
        "/v1/messages?beta=true",
        &[("x-api-key", "sk-test")],
        &body.to_string(),
    );
    assert_eq!(st, 200, "{b}");
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["content"][1]["name"], "Write");
    assert_eq!(
        v["content"][1]["input"],
        json!({"file_path": "hello.txt", "content": HELLO})
    );
    assert_eq!(v["usage"]["input_tokens"], 1200);

    // With one assistant turn in the history: turn 1 (text, end_turn); with two: the final text.
    for (history, text) in [(1, "I created hello.txt."), (2, "Done.")] {
        let mut messages = vec![json!({"role": "user", "content": "go"})];
        for _ in 0..history {
            messages.push(json!({"role": "assistant", "content": "x"}));
            messages.push(json!({"role": "user", "content": "ok"}));
        }
        let body = json!({"model": "scripted-edit-file", "tools": tools_anthropic(), "messages": messages});
        let (st, b) = http(a, "POST", "/v1/messages", &[], &body.to_string());
        assert_eq!(st, 200);
        let v: Value = serde_json::from_str(&b).unwrap();
        assert_eq!(
            (v["content"][0]["text"].as_str(), v["stop_reason"].as_str()),
            (Some(text), Some("end_turn"))
        );
    }

    // A side request (no tools) with any model gets a short text.
    let (st, b) = http(
        a,
        "POST",
        "/v1/messages",
        &[],
        r#"{"model":"claude-haiku","messages":[{"role":"user","content":"title?"}]}"#,
    );
    assert_eq!(st, 200);
    assert!(b.contains("Scripted session"), "{b}");

    // Unknown script: 400 in each provider's error shape.
    let body = json!({"model": "scripted-nope", "tools": tools_anthropic(), "messages": []});
    let (st, b) = http(a, "POST", "/v1/messages", &[], &body.to_string());
    assert_eq!(st, 400);
    let v: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(v["type"], "error");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("unknown script \"nope\""));
    let body =
        json!({"model": "scripted-nope", "tools": [{"type": "function", "name": "exec_command"}], "input": "hi"});
    let (st, b) = http(a, "POST", "/v1/responses", &[], &body.to_string());
    assert_eq!(st, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap()["error"]["code"],
        "model_not_found"
    );

    // The script header overrides the model name; streaming Responses ends with usage.
    let body = json!({"model": "gpt-x", "stream": true,
                      "tools": [{"type": "function", "name": "exec_command", "parameters": {"properties": {"cmd": {}}}}],
                      "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "go"}]}]});
    let (st, b) = http(
        a,
        "POST",
        "/v1/responses",
        &[("x-scripted-model-script", "echo-secret")],
        &body.to_string(),
    );
    assert_eq!(st, 200);
    assert!(b.contains("event: response.completed"), "{b}");
    assert!(b.contains(r#""name":"exec_command""#), "{b}");
    assert!(b.contains(r#""total_tokens":120"#), "{b}");

    // Chat Completions streaming.
    let body = json!({"model": "scripted-edit-file", "stream": true,
                      "tools": [{"type": "function", "function": {"name": "write_file", "parameters": {"properties": {"file_path": {}, "content": {}}}}}],
                      "messages": [{"role": "user", "content": "go"}]});
    let (st, b) = http(a, "POST", "/v1/chat/completions", &[], &body.to_string());
    assert_eq!(st, 200);
    assert!(
        b.contains(r#""finish_reason":"tool_calls""#) && b.contains("data: [DONE]"),
        "{b}"
    );

    // The API key header is never logged.
    assert!(server.log().iter().all(|l| !l.contains("sk-test")));
}

#[test]
fn sleeping_turn_streams_keepalives_first() {
    let dir = workdir("scripts");
    std::fs::write(dir.path().join("nap.json"), r#"[{"sleep_ms": 1200, "text": "awake"}]"#).unwrap();
    let server = Server::start(dir.path(), 200);
    let body = json!({"model": "scripted-nap", "stream": true, "tools": tools_anthropic(),
                      "messages": [{"role": "user", "content": "go"}]});
    let started = Instant::now();
    let (st, b) = http(server.addr, "POST", "/v1/messages", &[], &body.to_string());
    assert_eq!(st, 200);
    assert!(started.elapsed() >= Duration::from_millis(1200));
    let start = b.find("event: message_start").unwrap();
    let text = b.find("awake").unwrap();
    let pings = b[start..text].matches("event: ping").count();
    assert!(pings >= 4, "expected keepalive pings before the text, got {pings}: {b}");
    assert!(b.contains(r#""stop_reason":"end_turn""#));
}

fn cli(name: &str) -> Option<PathBuf> {
    let base = std::env::var_os("PADDOCK_NPM_CLIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let cache = std::env::var_os("PADDOCK_CACHE").unwrap_or_else(|| "/var/cache/paddock".into());
            PathBuf::from(cache).join("npm-clis")
        });
    let bin = base.join("node_modules/.bin").join(name);
    if bin.exists() {
        return Some(bin);
    }
    let msg = format!("{} not installed; see e2e/scripted-model/README.md", bin.display());
    if std::env::var("SCRIPTED_MODEL_REQUIRE_CLIS").as_deref() == Ok("1") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// A fresh git repository with its own HOME; returns (tempdir, repo path, home path).
fn sandbox(name: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = workdir(name);
    let repo = dir.path().join("repo");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::create_dir_all(&home).unwrap();
    let _ = Command::new("git").args(["init", "-q"]).current_dir(&repo).status();
    (dir, repo, home)
}

fn run_claude(bin: &Path, server: &Server, repo: &Path, home: &Path, model: &str) -> (bool, Vec<Value>, Duration) {
    let started = Instant::now();
    let out = Command::new(bin)
        .args(["-p", "create hello.txt", "--output-format", "stream-json", "--verbose"])
        .args(["--permission-mode", "acceptEdits", "--model", model])
        .current_dir(repo)
        .env("HOME", home)
        .env("ANTHROPIC_BASE_URL", format!("http://{}", server.addr))
        .env("ANTHROPIC_API_KEY", "sk-test")
        .env("DISABLE_TELEMETRY", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .stdin(Stdio::null())
        .output()
        .expect("run claude");
    let elapsed = started.elapsed();
    eprintln!(
        "claude took {elapsed:?}; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), jsonl(&out.stdout), elapsed)
}

fn jsonl(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l}: {e}")))
        .collect()
}

#[test]
fn claude_code_writes_the_file() {
    let Some(bin) = cli("claude") else { return };
    let server = Server::start(&repo_scripts(), 5000);
    let (_dir, repo, home) = sandbox("claude");
    let (ok, events, _) = run_claude(&bin, &server, &repo, &home, "scripted-edit-file");
    assert!(ok, "claude failed: {events:#?}");
    assert_eq!(std::fs::read_to_string(repo.join("hello.txt")).unwrap(), HELLO);
    let tool_use = events
        .iter()
        .filter(|e| e["type"] == "assistant")
        .flat_map(|e| e["message"]["content"].as_array().cloned().unwrap_or_default())
        .find(|c| c["type"] == "tool_use")
        .expect("a tool_use block");
    assert_eq!(tool_use["name"], "Write");
    let result = events.last().unwrap();
    assert_eq!(
        (result["type"].as_str(), result["subtype"].as_str()),
        (Some("result"), Some("success"))
    );
    assert_eq!(result["result"], "I created hello.txt.");
    assert_eq!(result["usage"]["input_tokens"], 2500);
    assert_eq!(result["usage"]["output_tokens"], 50);
    server.assert_logged("turn=0 tool=Write");
    assert!(server.log().iter().all(|l| !l.contains("sk-test")));
}

#[test]
fn claude_code_refuses_a_write_outside_the_workdir() {
    let Some(bin) = cli("claude") else { return };
    let (dir, repo, home) = sandbox("claude-outside");
    let outside = dir.path().join("outside.txt");
    let scripts = dir.path().join("scripts");
    std::fs::create_dir(&scripts).unwrap();
    let script = json!([{"tool": {"write_file": {"path": outside, "content": "no\n"}}}, {"text": "tried"}]);
    std::fs::write(scripts.join("outside.json"), script.to_string()).unwrap();
    let server = Server::start(&scripts, 5000);
    let (ok, events, _) = run_claude(&bin, &server, &repo, &home, "scripted-outside");
    assert!(ok);
    assert!(!outside.exists(), "Claude Code wrote outside its working directory");
    assert!(
        events.iter().any(|e| e["subtype"] == "permission_denied"),
        "{events:#?}"
    );
    assert_eq!(events.last().unwrap()["permission_denials"][0]["tool_name"], "Write");
}

#[test]
fn codex_writes_the_file() {
    let Some(bin) = cli("codex") else { return };
    let server = Server::start(&repo_scripts(), 5000);
    let (dir, repo, home) = sandbox("codex");
    let codex_home = dir.path().join("codex-home");
    std::fs::create_dir(&codex_home).unwrap();
    let started = Instant::now();
    let out = Command::new(bin)
        .args(["exec", "--json", "--skip-git-repo-check", "-s", "workspace-write"])
        .args(["-m", "scripted-edit-file"])
        .args(["-c", r#"model_provider="p""#, "-c", r#"model_providers.p.name="p""#])
        .arg("-c")
        .arg(format!(r#"model_providers.p.base_url="http://{}/v1""#, server.addr))
        .args(["-c", r#"model_providers.p.wire_api="responses""#])
        .args(["-c", r#"model_providers.p.env_key="OPENAI_API_KEY""#])
        .arg("create hello.txt")
        .current_dir(&repo)
        .env("HOME", &home)
        .env("CODEX_HOME", &codex_home)
        .env("OPENAI_API_KEY", "sk-test")
        .stdin(Stdio::null())
        .output()
        .expect("run codex");
    eprintln!(
        "codex took {:?}; stderr: {}",
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr)
    );
    let events = jsonl(&out.stdout);
    assert!(out.status.success(), "codex failed: {events:#?}");
    assert_eq!(std::fs::read_to_string(repo.join("hello.txt")).unwrap(), HELLO);
    let command = events
        .iter()
        .find(|e| e["type"] == "item.completed" && e["item"]["type"] == "command_execution")
        .expect("a command_execution item");
    assert_eq!(command["item"]["exit_code"], 0);
    assert!(events
        .iter()
        .any(|e| e["item"]["type"] == "agent_message" && e["item"]["text"] == "I created hello.txt."));
    let done = events.last().unwrap();
    assert_eq!(done["type"], "turn.completed");
    assert_eq!(done["usage"]["input_tokens"], 2500);
    assert_eq!(done["usage"]["output_tokens"], 50);
    server.assert_logged("turn=0 tool=exec_command");
    assert!(server.log().iter().all(|l| !l.contains("sk-test")));
}

/// A prompt that a CLI would misread if it reached its option parser: `--help` prints help and
/// exits, the double space and the newline must survive.
const DASH_PROMPT: &str = "--help  create hello.txt\n-v \"now\"";

/// Whether any file under `dir` contains `needle` (the CLIs keep their sessions under HOME).
fn tree_contains(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).into_iter().flatten().flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            tree_contains(&p, needle)
        } else {
            std::fs::read(&p).is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle))
        }
    })
}

/// The prompt as the CLIs store it in their JSON session records.
fn stored_prompt() -> Vec<u8> {
    let json = serde_json::to_string(DASH_PROMPT).unwrap();
    json.trim_matches('"').as_bytes().to_vec()
}

#[test]
fn qwen_code_writes_the_file() {
    let Some(bin) = cli("qwen") else { return };
    let server = Server::start(&repo_scripts(), 5000);
    let (_dir, repo, home) = sandbox("qwen");
    // What the runner's qwen-code adapter writes (runner-image/src/agent/qwen.rs).
    std::fs::create_dir_all(home.join(".qwen")).unwrap();
    let settings = json!({
        "security": {"auth": {"selectedType": "openai"}},
        "memory": {"enableManagedAutoMemory": false, "enableManagedAutoDream": false},
        "privacy": {"usageStatisticsEnabled": false},
        "telemetry": {"enabled": false},
    });
    std::fs::write(home.join(".qwen/settings.json"), settings.to_string()).unwrap();
    let started = Instant::now();
    let out = Command::new(bin)
        .args(["-o", "stream-json", "--yolo", "-m", "scripted-edit-file"])
        .arg(format!("--prompt={DASH_PROMPT}"))
        .current_dir(&repo)
        .env("HOME", &home)
        .env("OPENAI_BASE_URL", format!("http://{}/v1", server.addr))
        .env("OPENAI_API_KEY", "sk-test")
        .stdin(Stdio::null())
        .output()
        .expect("run qwen");
    eprintln!(
        "qwen took {:?}; stderr: {}",
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr)
    );
    let events = jsonl(&out.stdout);
    assert!(out.status.success(), "qwen failed: {events:#?}");
    assert_eq!(std::fs::read_to_string(repo.join("hello.txt")).unwrap(), HELLO);
    let result = events.last().unwrap();
    assert_eq!(
        (result["type"].as_str(), result["is_error"].as_bool()),
        (Some("result"), Some(false))
    );
    assert_eq!(result["result"], "I created hello.txt.");
    assert_eq!(result["usage"]["input_tokens"], 2500);
    // Its write_file refuses relative paths: the relative write went through the shell.
    server.assert_logged("turn=0 tool=run_shell_command");
    server.assert_logged("turn=1 tool=none");
    assert!(
        tree_contains(&home, &stored_prompt()),
        "the prompt reached Qwen Code verbatim"
    );
    // No memory sub-agent or anything else after the two scripted turns.
    let requests = server
        .log()
        .iter()
        .filter(|l| l.contains("POST /v1/chat/completions"))
        .count();
    assert_eq!(requests, 2, "{:#?}", server.log());
    assert!(server.log().iter().all(|l| !l.contains("sk-test")));
}

#[test]
fn opencode_writes_the_file_and_its_title_request_is_a_side_request() {
    let Some(bin) = cli("opencode") else { return };
    let server = Server::start(&repo_scripts(), 5000);
    let (_dir, repo, home) = sandbox("opencode");
    // What the runner's opencode adapter sets (runner-image/src/agent/opencode.rs).
    let config = json!({
        "autoupdate": false,
        "share": "disabled",
        "permission": {"edit": "allow", "bash": "allow", "webfetch": "allow"},
        "provider": {"paddock": {
            "npm": "@ai-sdk/openai-compatible",
            "name": "paddock",
            "options": {"baseURL": format!("http://{}/v1", server.addr), "apiKey": "{env:OPENAI_API_KEY}"},
            "models": {"scripted-edit-file": {"name": "scripted-edit-file"}},
        }},
    });
    let started = Instant::now();
    let out = Command::new(bin)
        .args(["run", "--format", "json", "-m", "paddock/scripted-edit-file", "--"])
        .args(DASH_PROMPT.split(' '))
        .current_dir(&repo)
        // OpenCode takes its working directory from $PWD when set (the runner sets it too).
        .env("PWD", &repo)
        .env("HOME", &home)
        .env("OPENCODE_CONFIG_CONTENT", config.to_string())
        .env("OPENAI_API_KEY", "sk-test")
        .envs(
            [
                "OPENCODE_DISABLE_MODELS_FETCH",
                "OPENCODE_DISABLE_AUTOUPDATE",
                "OPENCODE_DISABLE_LSP_DOWNLOAD",
                "OPENCODE_DISABLE_SHARE",
                "OPENCODE_DISABLE_DEFAULT_PLUGINS",
            ]
            .map(|k| (k, "1")),
        )
        .stdin(Stdio::null())
        .output()
        .expect("run opencode");
    eprintln!(
        "opencode took {:?}; stderr: {}",
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr)
    );
    let events = jsonl(&out.stdout);
    assert!(out.status.success(), "opencode failed: {events:#?}");
    assert_eq!(std::fs::read_to_string(repo.join("hello.txt")).unwrap(), HELLO);
    let tool = events
        .iter()
        .find(|e| e["type"] == "tool_use")
        .expect("a tool_use line");
    assert_eq!(tool["part"]["state"]["status"], "completed");
    assert!(events
        .iter()
        .any(|e| e["type"] == "text" && e["part"]["text"] == "I created hello.txt."));
    let steps: Vec<&Value> = events.iter().filter(|e| e["type"] == "step_finish").collect();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[1]["part"]["tokens"]["input"], 1300);
    // The title request (no tools) did not consume a scripted turn.
    server.assert_logged("tools=0 side");
    server.assert_logged("turn=0 tool=write");
    server.assert_logged("turn=1 tool=none");
    assert!(
        tree_contains(&home, &stored_prompt()),
        "the prompt reached OpenCode verbatim"
    );
    assert!(server.log().iter().all(|l| !l.contains("sk-test")));
}
