//! Traces of the real `paddock-runner` binary reach a real OpenTelemetry Collector over
//! OTLP/HTTP: `clone` and `run` (shell agent) against a file:// origin, with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at a collector (built by
//! `e2e/cluster/build-binaries.sh otelcol`) whose debug exporter prints every span.
//! Skipped (passes with "skipped: no collector") when no collector binary is found, unless
//! `PADDOCK_REQUIRE_OTELCOL` is set.

use std::collections::HashMap;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use git2::{Repository, Signature};
use paddock_crds::events::parse_line;

const BIN: &str = env!("CARGO_BIN_EXE_paddock-runner");

/// `$PADDOCK_OTELCOL`, else the newest `$PADDOCK_CACHE/bin/otelcol-*/otelcol` (cache default
/// `/var/cache/paddock`).
fn collector_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("PADDOCK_OTELCOL") {
        return Some(PathBuf::from(p));
    }
    let cache = std::env::var("PADDOCK_CACHE").unwrap_or_else(|_| "/var/cache/paddock".into());
    let mut found: Vec<PathBuf> = std::fs::read_dir(format!("{cache}/bin"))
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("otelcol-"))
        .map(|e| e.path().join("otelcol"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop()
}

/// A collector with an OTLP/HTTP receiver on a free local port and the debug exporter
/// (detailed) writing to a log file; killed on drop.
struct Collector {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Collector {
    fn start(bin: &Path, dir: &Path) -> Collector {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = dir.join("otelcol.yaml");
        std::fs::write(
            &config,
            format!(
                "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:{port}\n\
                 exporters:\n  debug:\n    verbosity: detailed\n\
                 service:\n  telemetry:\n    metrics:\n      level: none\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [debug]\n"
            ),
        )
        .unwrap();
        let log = dir.join("otelcol.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config=file:{}", config.display()))
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap();
        let mut c = Collector { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(st)) = c.child.try_wait() {
                panic!("collector exited ({st}): {}", c.output());
            }
            assert!(Instant::now() < deadline, "collector not listening: {}", c.output());
            std::thread::sleep(Duration::from_millis(100));
        }
        c
    }

    fn output(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The spans printed so far, once `n` of them are there (or after 10 s).
    fn spans(&self, n: usize) -> (Vec<HashMap<String, String>>, String) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.output();
            let spans = parse_spans(&out);
            if spans.len() >= n || Instant::now() > deadline {
                return (spans, out);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The spans of the debug exporter's detailed output: each `Span #n` block's `Key : value`
/// lines (`Name`, `ID`, `Parent ID`, `Trace ID`, `Status code`, ...) and its attributes as
/// `attr.<key>` (`-> key: Str(value)` → `value`), plus the resource's `service.name`, `paddock.run`
/// as `resource.<key>`.
fn parse_spans(out: &str) -> Vec<HashMap<String, String>> {
    let mut spans = Vec::new();
    let mut resource: HashMap<String, String> = HashMap::new();
    let mut current: Option<HashMap<String, String>> = None;
    let mut in_resource = false;
    for line in out.lines() {
        let t = line.trim();
        if t.starts_with("ResourceSpans #") {
            if let Some(s) = current.take() {
                spans.push(s);
            }
            resource.clear();
            in_resource = false;
        } else if t.starts_with("Resource attributes:") {
            in_resource = true;
        } else if t.starts_with("Span #") {
            if let Some(s) = current.take() {
                spans.push(s);
            }
            in_resource = false;
            current = Some(
                resource
                    .iter()
                    .map(|(k, v)| (format!("resource.{k}"), v.clone()))
                    .collect(),
            );
        } else if t.starts_with("ScopeSpans #") {
            in_resource = false;
        } else if let Some(attr) = t.strip_prefix("-> ") {
            let Some((k, v)) = attr.split_once(": ") else { continue };
            let v = v
                .strip_prefix("Str(")
                .or_else(|| v.strip_prefix("Int("))
                .and_then(|v| v.strip_suffix(')'))
                .unwrap_or(v)
                .to_string();
            if let Some(s) = current.as_mut() {
                s.insert(format!("attr.{k}"), v);
            } else if in_resource {
                resource.insert(k.to_string(), v);
            }
        } else if let (Some(s), Some((k, v))) = (current.as_mut(), t.split_once(" : ").or_else(|| t.split_once(" :"))) {
            s.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    if let Some(s) = current.take() {
        spans.push(s);
    }
    spans
}

fn sig() -> Signature<'static> {
    Signature::new(
        "Origin Author",
        "origin@example.com",
        &git2::Time::new(1_700_000_000, 0),
    )
    .unwrap()
}

/// A non-bare origin on `main` with one commit.
fn make_origin(path: &Path) {
    let repo = Repository::init(path).unwrap();
    repo.set_head("refs/heads/main").unwrap();
    std::fs::write(path.join("README.md"), "hello\n").unwrap();
    let mut index = repo.index().unwrap();
    index.add_path(Path::new("README.md")).unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    repo.commit(Some("HEAD"), &sig(), &sig(), "initial", &tree, &[])
        .unwrap();
}

fn runner(dir: &Path, sub: &str, env: &[(&str, &str)]) -> Output {
    std::fs::create_dir_all(dir.join("home")).unwrap();
    let mut c = Command::new(BIN);
    c.arg(sub)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()))
        .env("HOME", dir.join("home"))
        .env("PADDOCK_WORKSPACE", dir.join("workspace"))
        .env("PADDOCK_TERMINATION_LOG", dir.join("termination-log"))
        .env("PADDOCK_GIT_CREDENTIALS_DIR", dir.join("no-creds"))
        .env("PADDOCK_BRANCH", "paddock/otel-run")
        .env("PADDOCK_RUN", "otel-run")
        .env("PADDOCK_NAMESPACE", "otel-ns")
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().unwrap();
    // stdout stays the event protocol: every line is an event.
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        assert!(parse_line(l).is_some(), "stdout line is not an event: {l:?}");
    }
    out
}

fn named<'a>(spans: &'a [HashMap<String, String>], name: &str) -> &'a HashMap<String, String> {
    spans
        .iter()
        .find(|s| s.get("Name").map(String::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no span {name} in {spans:#?}"))
}

#[test]
fn clone_and_run_export_their_step_spans() {
    let Some(bin) = collector_binary() else {
        assert!(
            std::env::var_os("PADDOCK_REQUIRE_OTELCOL").is_none(),
            "PADDOCK_REQUIRE_OTELCOL is set but no collector was found (build-binaries.sh otelcol)"
        );
        eprintln!("skipped: no collector");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start(&bin, dir.path());
    let endpoint = format!("http://127.0.0.1:{}", collector.port);
    let otel = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
    make_origin(&dir.path().join("origin"));
    let origin = format!("file://{}", dir.path().join("origin").display());

    let mut env = otel.to_vec();
    env.push(("PADDOCK_REPO_URL", &origin));
    let out = runner(dir.path(), "clone", &env);
    assert!(out.status.success(), "clone: {}", String::from_utf8_lossy(&out.stderr));
    let mut env = otel.to_vec();
    env.extend([("PADDOCK_AGENT", "shell"), ("PADDOCK_PROMPT", "echo hi > new.txt")]);
    let out = runner(dir.path(), "run", &env);
    assert!(out.status.success(), "run: {}", String::from_utf8_lossy(&out.stderr));

    // runner.clone + clone, runner.run + agent + commit + diff.
    let (spans, raw) = collector.spans(6);
    assert_eq!(spans.len(), 6, "{spans:#?}\n{raw}");
    for s in &spans {
        assert_eq!(s["resource.service.name"], "paddock-runner", "{s:?}");
        assert_eq!(s["resource.paddock.run"], "otel-run", "{s:?}");
        assert_eq!(s["resource.paddock.namespace"], "otel-ns", "{s:?}");
    }
    let root = named(&spans, "runner.run");
    assert_eq!(root["attr.paddock.run"], "otel-run");
    assert_eq!(root["attr.paddock.exit_code"], "0");
    for step in ["agent", "commit", "diff"] {
        let s = named(&spans, step);
        assert_eq!(s["Parent ID"], root["ID"], "{step} is a child of runner.run");
        assert_eq!(s["Trace ID"], root["Trace ID"]);
        assert_eq!(s["attr.paddock.step"], step);
        assert_eq!(s["Status code"], "Unset", "{s:?}");
    }
    assert!(named(&spans, "commit")["attr.paddock.message"].starts_with("committed "));
    let clone_root = named(&spans, "runner.clone");
    let clone = named(&spans, "clone");
    assert_eq!(clone["Parent ID"], clone_root["ID"]);
    assert_ne!(clone["Trace ID"], root["Trace ID"], "one trace per command");

    // A failing agent: its span and the root carry an error status.
    let mut env = otel.to_vec();
    env.extend([("PADDOCK_AGENT", "shell"), ("PADDOCK_PROMPT", "exit 3")]);
    let out = runner(dir.path(), "run", &env);
    assert_eq!(out.status.code(), Some(1));
    // runner.run, agent, commit at least (diff too when the branch has a commit).
    let (spans, raw) = collector.spans(9);
    let failed_root = spans
        .iter()
        .find(|s| s["Name"] == "runner.run" && s["Status code"] == "Error")
        .unwrap_or_else(|| panic!("no failed runner.run in {raw}"));
    assert_eq!(failed_root["attr.paddock.exit_code"], "1");
    assert_eq!(failed_root["Status message"], "exit code 1");
    let trace: Vec<_> = spans
        .iter()
        .filter(|s| s["Trace ID"] == failed_root["Trace ID"])
        .collect();
    let agent = trace
        .iter()
        .find(|s| s["Name"] == "agent")
        .unwrap_or_else(|| panic!("no agent span in {trace:#?}"));
    assert_eq!(agent["Status code"], "Error", "{agent:?}");
    assert!(agent["Status message"].contains("exit code 3"), "{agent:?}");
    assert_eq!(agent["Parent ID"], failed_root["ID"]);
    assert!(trace
        .iter()
        .any(|s| s["Name"] == "commit" && s["Status code"] == "Unset"));
}

#[test]
fn no_endpoint_no_export() {
    // Without OTEL variables nothing listens and nothing is attempted: the run is as before.
    let dir = tempfile::tempdir().unwrap();
    make_origin(&dir.path().join("origin"));
    let origin = format!("file://{}", dir.path().join("origin").display());
    let out = runner(dir.path(), "clone", &[("PADDOCK_REPO_URL", &origin)]);
    assert!(out.status.success());
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}
