//! Hostile prompts and floods of output (issue 9).
//!
//! - A prompt full of shell metacharacters and command substitution reaches every agent CLI as
//!   one argv element (OpenCode: words split at spaces that it joins back; Qwen Code:
//!   `--prompt=<prompt>`; Claude Code: a stream-json user line on its stdin, no argv element),
//!   never through a shell: checked on the built [`Invocation`] and on a
//!   real `paddock-runner run` whose `PADDOCK_AGENT_BIN` is a script recording its argv
//!   NUL-separated, with a marker file that any shell evaluation would create.
//! - The `shell` agent is `sh -c <prompt>` by design (documented in `agent`'s module docs and
//!   `AgentName::Shell`): asserted to be exactly that.
//! - An agent CLI printing 100k lines yields at most `MAX_LOG_EVENTS` `log` events plus one
//!   "…more lines omitted" (the [`Emitter`] API and a real run).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use git2::{Repository, Signature};
use paddock_crds::events::{parse_line, EventLine, RunnerEvent, MAX_TEXT_BYTES};
use paddock_runner::agent::{build_invocation, mapper_for, AgentKind, AgentSpec};
use paddock_runner::config::Env;
use paddock_runner::emit::{Emitter, LOGS_OMITTED, MAX_LOG_EVENTS};

const BIN: &str = env!("CARGO_BIN_EXE_paddock-runner");

/// A marker path no test creates: only a shell evaluating the prompt would.
fn marker() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    PathBuf::from(format!("/tmp/pwned-{}-{nanos}", std::process::id()))
}

/// A prompt that does damage if any shell sees it: a leading option, command substitution in
/// both forms, command separators, a pipe, globs, quotes, variables, newlines.
fn hostile_prompt(marker: &Path) -> String {
    let m = marker.display();
    format!(
        "--help $(touch {m}) `touch {m}` ; touch {m}; rm -rf ~ | tee {m} && touch {m} || touch {m}\n\
         -rf second line \"$(touch {m})\" '$(touch {m})' $HOME ${{HOME}} * ? [a] \\ \\n > {m} < /etc/passwd &\n\
         \t trailing tab and spaces  "
    )
}

fn spec(kind: AgentKind, prompt: &str) -> AgentSpec {
    AgentSpec {
        kind,
        prompt: prompt.to_string(),
        model: None,
        args: Vec::new(),
        max_turns: None,
    }
}

/// What each adapter passes for `prompt`, after its own fixed arguments (Claude Code: nothing,
/// its prompt goes to stdin, [`stdin_prompt`]).
fn expected_prompt_args(kind: AgentKind, prompt: &str) -> Vec<String> {
    match kind {
        AgentKind::ClaudeCode => Vec::new(),
        AgentKind::Codex | AgentKind::OpenClaw => vec!["--".into(), prompt.into()],
        AgentKind::QwenCode | AgentKind::GeminiCli => vec![format!("--prompt={prompt}")],
        AgentKind::OpenCode => std::iter::once("--".to_string())
            .chain(prompt.split(' ').map(String::from))
            .collect(),
        AgentKind::Shell => vec!["-c".into(), prompt.into()],
        AgentKind::Custom(_) => vec![prompt.into()],
        AgentKind::Aider => vec![format!("--message={prompt}")],
        AgentKind::Hermes => vec![format!("--oneshot={prompt}")],
        AgentKind::OpenHands => vec![format!("--task={prompt}")],
    }
}

/// The prompt in Claude Code's first stdin line (`{"type":"user","message":{"content":…}}`).
fn stdin_prompt(line: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(line.trim_end()).expect(line);
    assert_eq!(v["type"], "user", "{line}");
    v["message"]["content"].as_str().unwrap().to_string()
}

const CLIS: [AgentKind; 9] = [
    AgentKind::ClaudeCode,
    AgentKind::Codex,
    AgentKind::QwenCode,
    AgentKind::OpenCode,
    AgentKind::GeminiCli,
    AgentKind::OpenClaw,
    AgentKind::Aider,
    AgentKind::Hermes,
    AgentKind::OpenHands,
];

#[test]
fn every_cli_gets_the_prompt_verbatim_without_a_shell() {
    let m = marker();
    let prompt = hostile_prompt(&m);
    let env = Env::from_pairs([("HOME", "/h"), ("PADDOCK_AGENT_BIN", "/fake/cli")]);
    for kind in CLIS {
        let inv = build_invocation(&spec(kind, &prompt), &env);
        assert_eq!(
            inv.program, "/fake/cli",
            "{kind:?}: the program is the CLI, not a shell"
        );
        let want = expected_prompt_args(kind, &prompt);
        let tail = &inv.args[inv.args.len() - want.len()..];
        assert_eq!(tail, want.as_slice(), "{kind:?}");
        // No other argument carries any part of the prompt, and the fixed arguments come first.
        let head = &inv.args[..inv.args.len() - want.len()];
        assert!(
            !head.iter().any(|a| a.contains("touch")),
            "{kind:?}: prompt leaked into {head:?}"
        );
        match kind {
            AgentKind::OpenCode => assert_eq!(tail[1..].join(" "), prompt, "OpenCode joins words back"),
            AgentKind::QwenCode | AgentKind::GeminiCli => {
                assert_eq!(tail[0].strip_prefix("--prompt="), Some(prompt.as_str()))
            }
            AgentKind::Aider => assert_eq!(tail[0].strip_prefix("--message="), Some(prompt.as_str())),
            AgentKind::Hermes => assert_eq!(tail[0].strip_prefix("--oneshot="), Some(prompt.as_str())),
            AgentKind::OpenHands => assert_eq!(tail[0].strip_prefix("--task="), Some(prompt.as_str())),
            AgentKind::ClaudeCode => {
                let line = inv.stdin.as_deref().unwrap();
                assert_eq!(line.matches('\n').count(), 1, "one line: {line:?}");
                assert_eq!(stdin_prompt(line), prompt);
            }
            _ => assert_eq!(tail[1], prompt),
        }
        assert!(!["sh", "bash", "/bin/sh"].contains(&inv.program.as_str()));
    }
    // Without PADDOCK_AGENT_BIN the programs are the CLIs themselves.
    let env = Env::from_pairs([("HOME", "/h")]);
    let programs: Vec<String> = CLIS
        .iter()
        .map(|k| build_invocation(&spec(*k, &prompt), &env).program)
        .collect();
    assert_eq!(
        programs,
        [
            "claude",
            "codex",
            "qwen",
            "opencode",
            "gemini",
            "openclaw",
            "aider",
            "hermes",
            "openhands"
        ]
    );
    assert!(!m.exists());
}

#[test]
fn custom_command_gets_the_prompt_as_its_last_argument() {
    let m = marker();
    let prompt = hostile_prompt(&m);
    let kind = AgentKind::Custom(paddock_runner::agent::custom::Output::Text);
    let env = Env::from_pairs([
        ("PADDOCK_AGENT_COMMAND", r#"["/opt/agent","--flag"]"#),
        ("PADDOCK_AGENT_BIN", "/fake/cli"),
    ]);
    let inv = build_invocation(&spec(kind, &prompt), &env);
    assert_eq!(
        inv.program, "/opt/agent",
        "the command, not PADDOCK_AGENT_BIN or a shell"
    );
    let mut want = vec!["--flag".to_string()];
    want.extend(expected_prompt_args(kind, &prompt));
    assert_eq!(inv.args, want);
    assert!(!m.exists());
}

#[test]
fn shell_agent_is_exactly_sh_c_prompt_and_documented() {
    let prompt = hostile_prompt(&marker());
    // PADDOCK_AGENT_BIN does not replace `sh`.
    let inv = build_invocation(
        &spec(AgentKind::Shell, &prompt),
        &Env::from_pairs([("PADDOCK_AGENT_BIN", "/fake/cli")]),
    );
    assert_eq!(inv.program, "sh");
    assert_eq!(inv.args, vec!["-c".to_string(), prompt]);
    assert!(inv.env.is_empty() && inv.files.is_empty() && inv.create_dirs.is_empty());
    // The module docs say so (joined across line wraps).
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/agent/mod.rs")).unwrap();
    let docs: Vec<&str> = src
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(str::trim)
        .collect();
    assert!(
        docs.join(" ").contains(
            "never through a shell, except for the `shell` agent, which is exactly `sh -c \"$PADDOCK_PROMPT\"`"
        ),
        "agent module docs no longer document the shell agent"
    );
    let crd = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/src/agent.rs")).unwrap();
    assert!(crd.contains("/// `sh -c <prompt>`: the prompt is a shell script"));
}

fn sig() -> Signature<'static> {
    Signature::new("T", "t@example.com", &git2::Time::new(1_700_000_000, 0)).unwrap()
}

/// A temp dir with an origin repository cloned into `workspace/` by the real runner.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let f = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(f.path("home")).unwrap();
        let origin = f.path("origin");
        let repo = Repository::init(&origin).unwrap();
        repo.set_head("refs/heads/main").unwrap();
        std::fs::write(origin.join("README.md"), "hello\n").unwrap();
        let mut index = repo.index().unwrap();
        index.add_path(Path::new("README.md")).unwrap();
        let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
        repo.commit(Some("HEAD"), &sig(), &sig(), "initial", &tree, &[])
            .unwrap();
        let url = format!("file://{}", origin.display());
        let out = f.cmd("clone", &[("PADDOCK_REPO_URL", &url)]).output().unwrap();
        assert!(out.status.success(), "clone: {}", String::from_utf8_lossy(&out.stderr));
        f
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn cmd(&self, sub: &str, env: &[(&str, &str)]) -> Command {
        let mut c = Command::new(BIN);
        c.arg(sub)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()))
            .env("HOME", self.path("home"))
            .env("PADDOCK_WORKSPACE", self.path("workspace"))
            .env("PADDOCK_TERMINATION_LOG", self.path("termination-log"))
            .env("PADDOCK_GIT_CREDENTIALS_DIR", self.path("no-creds"))
            .env("PADDOCK_BRANCH", "paddock/r1")
            .env("PADDOCK_RUN", "r1")
            .env("PADDOCK_NAMESPACE", "team-a")
            .stdin(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    /// An executable that writes its argv NUL-separated to `argv` and the first line of its
    /// stdin to `stdin`, and then runs `then`.
    fn fake_cli(&self, then: &str) -> PathBuf {
        let script = self.path("fake-cli");
        let body = format!(
            "#!/bin/sh\nprintf '%s\\000' \"$@\" > {argv}\nhead -n 1 > {stdin}\n{then}\n",
            argv = self.path("argv").display(),
            stdin = self.path("stdin").display()
        );
        std::fs::write(&script, body).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    fn argv(&self) -> Vec<String> {
        let raw = std::fs::read(self.path("argv")).expect("the fake CLI ran");
        let text = String::from_utf8(raw).unwrap();
        let mut v: Vec<String> = text.split('\0').map(String::from).collect();
        assert_eq!(v.pop().as_deref(), Some(""), "argv ends with a NUL");
        v
    }
}

fn events(out: &Output) -> Vec<EventLine> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| parse_line(l).unwrap_or_else(|| panic!("not an event: {l:?}")))
        .collect()
}

#[test]
fn real_runs_pass_the_hostile_prompt_as_argv_and_no_shell_runs_it() {
    let f = Fixture::new();
    let m = marker();
    let prompt = hostile_prompt(&m);
    let script = f.fake_cli("exit 0");
    for kind in CLIS {
        let _ = std::fs::remove_file(f.path("argv"));
        let out = f
            .cmd(
                "run",
                &[
                    ("PADDOCK_AGENT", kind.as_str()),
                    ("PADDOCK_PROMPT", &prompt),
                    ("PADDOCK_AGENT_BIN", script.to_str().unwrap()),
                ],
            )
            .output()
            .unwrap();
        let argv = f.argv();
        let want = expected_prompt_args(kind, &prompt);
        assert!(argv.len() > want.len(), "{kind:?}: {argv:?}");
        assert_eq!(&argv[argv.len() - want.len()..], want.as_slice(), "{kind:?}");
        // The runner built the same argv as the pure builder (nothing rewritten on the way).
        let env = Env::from_pairs([("HOME", f.path("home").to_str().unwrap())]);
        assert_eq!(argv, build_invocation(&spec(kind, &prompt), &env).args, "{kind:?}");
        let stdin = std::fs::read_to_string(f.path("stdin")).unwrap();
        if kind == AgentKind::ClaudeCode {
            assert_eq!(stdin_prompt(&stdin), prompt);
        } else {
            assert_eq!(stdin, "", "{kind:?}: stdin is closed");
        }
        assert!(!m.exists(), "{kind:?}: the prompt was evaluated by a shell");
        assert!(f.path("home").is_dir(), "{kind:?}: `rm -rf ~` ran");
        assert!(!events(&out).is_empty(), "{kind:?}: the runner reported");
    }
}

#[test]
fn shell_agent_runs_the_prompt_as_a_script() {
    // The contrast that proves the marker check above can fail: `shell` is `sh -c`.
    let f = Fixture::new();
    let m = marker();
    let out = f
        .cmd(
            "run",
            &[
                ("PADDOCK_AGENT", "shell"),
                ("PADDOCK_PROMPT", &format!("echo $(touch {})", m.display())),
            ],
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(m.exists(), "sh -c evaluates the prompt");
    std::fs::remove_file(&m).unwrap();
}

fn log_texts(lines: &[EventLine]) -> Vec<&str> {
    lines
        .iter()
        .filter_map(|l| match &l.event {
            RunnerEvent::Log { text, .. } => Some(text.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn emitter_bounds_a_flood_of_cli_lines() {
    // 100k non-JSON lines (some huge, some invalid UTF-8 made lossy) through the Claude Code
    // mapper and the emitter.
    let mut mapper = mapper_for(AgentKind::ClaudeCode, None);
    let mut em = Emitter::new(Vec::new(), vec!["sk-flood-secret".into()]);
    let huge = "x".repeat(1 << 20);
    let lossy = String::from_utf8_lossy(b"bad \xff\xfe utf8 sk-flood-secret").into_owned();
    let mut written = 0;
    for i in 0..100_000 {
        let line = match i % 3 {
            0 => format!("line {i}"),
            1 if i < 100 => huge.clone(),
            _ => lossy.clone(),
        };
        for ev in mapper.stdout_line(&line) {
            if em.emit(ev).is_some() {
                written += 1;
            }
        }
    }
    em.emit(RunnerEvent::Message { text: "after".into() });
    let out = String::from_utf8(em.into_inner()).unwrap();
    assert!(!out.contains("sk-flood-secret"));
    let lines: Vec<EventLine> = out.lines().map(|l| parse_line(l).unwrap()).collect();
    let logs = log_texts(&lines);
    assert_eq!(written, MAX_LOG_EVENTS + 1);
    assert_eq!(logs.len(), MAX_LOG_EVENTS + 1);
    assert_eq!(logs.last().copied(), Some(LOGS_OMITTED));
    assert!(logs.iter().all(|t| t.len() <= MAX_TEXT_BYTES));
    // Bounded output: 201 lines of at most ~4 KiB each, not 100k lines or 1 MiB ones.
    assert!(
        out.len() < (MAX_LOG_EVENTS + 2) * (MAX_TEXT_BYTES + 256),
        "{}",
        out.len()
    );
    assert!(matches!(lines.last().unwrap().event, RunnerEvent::Message { .. }));
}

#[test]
fn real_cli_printing_100k_lines_is_bounded() {
    let f = Fixture::new();
    let script = f.fake_cli("i=0; while [ $i -lt 100000 ]; do echo \"noise $i\"; i=$((i+1)); done; echo err >&2");
    let out = f
        .cmd(
            "run",
            &[
                ("PADDOCK_AGENT", "claude-code"),
                ("PADDOCK_PROMPT", "x"),
                ("PADDOCK_AGENT_BIN", script.to_str().unwrap()),
            ],
        )
        .output()
        .unwrap();
    let lines = events(&out);
    let logs = log_texts(&lines);
    assert_eq!(
        logs.len(),
        MAX_LOG_EVENTS + 1,
        "{:?}",
        &logs[logs.len().saturating_sub(3)..]
    );
    assert_eq!(logs.last().copied(), Some(LOGS_OMITTED));
    assert!(out.stdout.len() < 200_000, "stdout is {} bytes", out.stdout.len());
    assert!(matches!(lines.last().unwrap().event, RunnerEvent::Result(_)));
}
