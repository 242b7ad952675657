//! Runs an agent CLI as a child process: stdout and stderr read line by line (lossy UTF-8) and
//! mapped to events as they arrive, in its own process group.
//!
//! Stdin is closed (`/dev/null`) unless the [`Invocation`] has `stdin` text (Claude Code): then
//! it is a pipe, the text is written first, [`InputLine`]s from the caller follow once the CLI
//! reported `agent_started` (each reported as a [`RunnerEvent::MessageDelivered`] once written,
//! with the mapper's [`StreamMapper::turns`] when it was handed over), and the pipe is closed when the CLI reports its
//! first `final` event (Claude Code then exits), when it exits, or on termination. Writes happen
//! in their own task, so a CLI that does not read cannot stall the output.
//!
//! Termination: when the `terminate` watch turns true (SIGTERM/SIGINT to the runner), SIGTERM
//! goes to the CLI's process group; after [`TERM_GRACE`] the group gets SIGKILL. When the CLI
//! exits, what is left of its group is killed and its pipes are drained for at most
//! [`DRAIN_GRACE`] (a background process may hold them open).

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use paddock_crds::events::RunnerEvent;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep_until, Instant};

use super::spec::Invocation;
use super::stream::StreamMapper;

/// Time between SIGTERM and SIGKILL to the CLI's process group.
pub const TERM_GRACE: Duration = Duration::from_secs(5);
/// Time the output pipes may stay open after the CLI exited.
pub const DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How the CLI ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
    /// It could not be started (message says why).
    SpawnFailed(String),
}

/// What [`run_cli`] observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CliOutcome {
    /// How the CLI ended.
    pub exit: Exit,
    /// The last non-blank stderr line (unredacted; the caller redacts).
    pub last_stderr: Option<String>,
    /// Whether the runner was asked to terminate while the CLI ran.
    pub terminated: bool,
}

/// A line for the open stdin of a CLI ([`Invocation::stdin`]) from outside it: a human's message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputLine {
    /// What the line is reported as once written: the `id` of the
    /// [`RunnerEvent::MessageDelivered`] (a RunMessage's UID).
    pub id: String,
    /// The line, without its newline.
    pub line: String,
}

/// What the writer task reports once an [`InputLine`] is written: its id and the turn when it
/// was handed over.
type Written = (String, u32);

/// Writes each `(report, text)` to `stdin` until `rx` is closed or a write fails, then drops
/// (closes) it; sends the `report` of each text written on `done`.
async fn write_stdin(
    mut stdin: tokio::process::ChildStdin,
    mut rx: mpsc::UnboundedReceiver<(Option<Written>, String)>,
    done: mpsc::UnboundedSender<Written>,
) {
    while let Some((report, text)) = rx.recv().await {
        if stdin.write_all(text.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            return;
        }
        if let Some(r) = report {
            let _ = done.send(r);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// Longest output line read whole (bytes): the rest of a longer line is discarded up to its
/// newline, so a CLI printing without newlines cannot grow the runner's memory.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

async fn read_lines<R: AsyncRead + Unpin>(r: R, stream: Stream, tx: mpsc::Sender<(Stream, String)>) {
    use tokio::io::AsyncReadExt;
    let mut reader = BufReader::new(r);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut reader)
            .take(MAX_LINE_BYTES as u64)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if n == MAX_LINE_BYTES && buf.last() != Some(&b'\n') {
                    // Skip the rest of this line.
                    let mut rest = Vec::new();
                    loop {
                        rest.clear();
                        match (&mut reader).take(64 * 1024).read_until(b'\n', &mut rest).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) if rest.last() == Some(&b'\n') => break,
                            Ok(_) => {}
                        }
                    }
                }
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end_matches(['\n', '\r']).to_string();
                if tx.send((stream, line)).await.is_err() {
                    break;
                }
            }
        }
    }
}

fn signal_group(pgid: Option<Pid>, sig: Signal) {
    if let Some(pgid) = pgid {
        // ESRCH (the group is gone) is fine.
        let _ = killpg(pgid, sig);
    }
}

/// Runs `inv` in `cwd`, feeding every output line through `mapper` into `sink`, until the CLI
/// exited and its output is drained. Never fails: a CLI that cannot start is reported as
/// [`Exit::SpawnFailed`].
pub async fn run_cli(
    inv: &Invocation,
    cwd: &Path,
    mapper: &mut dyn StreamMapper,
    terminate: &mut watch::Receiver<bool>,
    sink: impl FnMut(RunnerEvent),
) -> CliOutcome {
    run_cli_with(inv, cwd, mapper, terminate, None, None, sink).await
}

/// [`run_cli`] that also passes the events arriving on `side` to `sink`, in arrival order with
/// the CLI's own, while the CLI runs (used for approval requests made by the CLI's children),
/// and, for a CLI with an open stdin ([`Invocation::stdin`]), writes the lines arriving on
/// `input` to it (see the module documentation); `input` is ignored for the others.
pub async fn run_cli_with(
    inv: &Invocation,
    cwd: &Path,
    mapper: &mut dyn StreamMapper,
    terminate: &mut watch::Receiver<bool>,
    mut side: Option<mpsc::Receiver<RunnerEvent>>,
    mut input: Option<mpsc::Receiver<InputLine>>,
    mut sink: impl FnMut(RunnerEvent),
) -> CliOutcome {
    for dir in &inv.create_dirs {
        let _ = std::fs::create_dir_all(dir);
    }
    for (path, contents) in &inv.files {
        let written = match path.parent() {
            Some(parent) => std::fs::create_dir_all(parent),
            None => Ok(()),
        }
        .and_then(|()| std::fs::write(path, contents));
        if let Err(e) = written {
            // The CLI still starts: it may run without the file, and its own error says more.
            sink(RunnerEvent::Log {
                stream: "stderr".into(),
                text: format!("paddock-runner: cannot write {}: {e}", path.display()),
            });
        }
    }
    let mut cmd = tokio::process::Command::new(&inv.program);
    cmd.args(&inv.args)
        .envs(inv.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        // OpenCode takes its working directory from $PWD when set: keep it the real one.
        .env("PWD", cwd)
        .current_dir(cwd)
        .stdin(if inv.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return CliOutcome {
                exit: Exit::SpawnFailed(format!("cannot start {}: {e}", inv.program)),
                last_stderr: None,
                terminated: false,
            }
        }
    };
    let pgid = child.id().and_then(|p| i32::try_from(p).ok()).map(Pid::from_raw);
    let (tx, mut rx) = mpsc::channel(256);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(read_lines(out, Stream::Stdout, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(read_lines(err, Stream::Stderr, tx.clone()));
    }
    drop(tx);
    // The open stdin: a writer task, fed until the CLI's `final` (dropping `writer` closes it).
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Written>();
    let mut writer = None;
    let mut writer_task = None;
    if let (Some(text), Some(stdin)) = (&inv.stdin, child.stdin.take()) {
        let (wtx, wrx) = mpsc::unbounded_channel();
        let _ = wtx.send((None, text.clone()));
        writer = Some(wtx);
        writer_task = Some(tokio::spawn(write_stdin(stdin, wrx, done_tx)));
    } else {
        drop(done_tx);
        input = None;
    }
    let mut done_open = writer.is_some();
    let mut input_open = input.is_some();
    let mut started = false;

    let mut last_stderr = None;
    // `stream` None: `line` is unused and `event` comes from the side channel. Returns whether
    // the events included `agent_started` and `final`.
    let mut handle =
        |stream: Option<Stream>, line: String, event: Option<RunnerEvent>, mapper: &mut dyn StreamMapper| {
            let events = match stream {
                Some(Stream::Stdout) => mapper.stdout_line(&line),
                Some(Stream::Stderr) => {
                    if !line.trim().is_empty() {
                        last_stderr = Some(line.clone());
                    }
                    mapper.stderr_line(&line)
                }
                None => event.into_iter().collect(),
            };
            let seen = (
                events.iter().any(|e| matches!(e, RunnerEvent::AgentStarted { .. })),
                events.iter().any(|e| matches!(e, RunnerEvent::Final { .. })),
            );
            events.into_iter().for_each(&mut sink);
            seen
        };
    let mut side_open = side.is_some();

    let far = || Instant::now() + Duration::from_secs(365 * 24 * 3600);
    let mut status = None;
    let mut open = true;
    let mut terminated = false;
    let mut watching = true;
    let mut kill_at: Option<Instant> = None;
    let mut drain_until: Option<Instant> = None;
    while status.is_none() || open {
        tokio::select! {
            line = rx.recv(), if open => match line {
                Some((stream, line)) => {
                    let (agent_started, fin) = handle(Some(stream), line, None, mapper);
                    started |= agent_started;
                    if fin {
                        // Claude Code waits for more input after its result: end it.
                        writer = None;
                    }
                }
                None => open = false,
            },
            ev = async { side.as_mut()?.recv().await }, if side_open && status.is_none() => match ev {
                Some(ev) => {
                    handle(None, String::new(), Some(ev), mapper);
                }
                None => side_open = false,
            },
            msg = async { input.as_mut()?.recv().await }, if input_open && started && writer.is_some() => match msg {
                Some(InputLine { id, line }) => {
                    if let Some(w) = &writer {
                        // The turn as the CLI had reported it when the line was handed over.
                        let _ = w.send((Some((id, mapper.turns())), format!("{line}\n")));
                    }
                }
                None => input_open = false,
            },
            written = done_rx.recv(), if done_open => match written {
                Some((id, turn)) => {
                    handle(None, String::new(), Some(RunnerEvent::MessageDelivered { id, turn }), mapper);
                }
                None => done_open = false,
            },
            st = child.wait(), if status.is_none() => {
                status = Some(st);
                writer = None;
                kill_at = None;
                // Reap what the CLI left behind in its group, then drain the pipes briefly.
                signal_group(pgid, Signal::SIGKILL);
                drain_until = Some(Instant::now() + DRAIN_GRACE);
            },
            r = terminate.wait_for(|t| *t), if watching && !terminated => {
                if r.is_ok() {
                    terminated = true;
                    writer = None;
                    signal_group(pgid, Signal::SIGTERM);
                    kill_at = Some(Instant::now() + TERM_GRACE);
                } else {
                    watching = false;
                }
            },
            _ = sleep_until(kill_at.unwrap_or_else(far)), if kill_at.is_some() => {
                signal_group(pgid, Signal::SIGKILL);
                kill_at = None;
            },
            _ = sleep_until(drain_until.unwrap_or_else(far)), if drain_until.is_some() && open => {
                while let Ok((stream, line)) = rx.try_recv() {
                    handle(Some(stream), line, None, mapper);
                }
                break;
            },
        }
    }
    // Lines written before the CLI exited whose report had not arrived.
    while let Ok((id, turn)) = done_rx.try_recv() {
        handle(
            None,
            String::new(),
            Some(RunnerEvent::MessageDelivered { id, turn }),
            mapper,
        );
    }
    drop(writer);
    if let Some(t) = writer_task {
        // A process outside the CLI's group may hold the pipe without reading it.
        t.abort();
    }
    mapper.end_of_stream().into_iter().for_each(&mut sink);
    let exit = match status {
        Some(Ok(st)) => match (st.code(), st.signal()) {
            (Some(c), _) => Exit::Code(c),
            (None, Some(s)) => Exit::Signal(s),
            (None, None) => Exit::Code(-1),
        },
        Some(Err(e)) => Exit::SpawnFailed(format!("waiting for {} failed: {e}", inv.program)),
        None => Exit::Code(-1),
    };
    CliOutcome {
        exit,
        last_stderr,
        terminated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::shell::ShellMapper;

    async fn run(
        program: &str,
        args: &[&str],
        files: Vec<(std::path::PathBuf, String)>,
        cwd: &Path,
    ) -> Vec<RunnerEvent> {
        let inv = Invocation {
            stdin: None,
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            create_dirs: Vec::new(),
            files,
        };
        let (_tx, mut terminate) = watch::channel(false);
        let mut events = Vec::new();
        let outcome = run_cli(&inv, cwd, &mut ShellMapper, &mut terminate, |e| events.push(e)).await;
        assert_eq!(outcome.exit, Exit::Code(0), "{events:?}");
        events
    }

    fn log(text: &str) -> RunnerEvent {
        RunnerEvent::Log {
            stream: "stdout".into(),
            text: text.into(),
        }
    }

    /// Files are written (parents created) before the CLI starts.
    #[tokio::test]
    async fn writes_files_first() {
        let dir = tempfile::tempdir().unwrap();
        let settings = dir.path().join("home/.cli/settings.json");
        let files = vec![(settings.clone(), "{\"a\":1}".to_string())];
        let events = run("cat", &[&settings.display().to_string()], files, dir.path()).await;
        assert_eq!(events, vec![log("{\"a\":1}")]);
    }

    /// A line longer than [`MAX_LINE_BYTES`] is read up to the cap; the rest of it is skipped
    /// and the next line is read as usual.
    #[tokio::test]
    async fn overlong_lines_are_cut_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let script = format!(
            "head -c {} /dev/zero | tr '\\0' x; echo; echo next",
            MAX_LINE_BYTES + 100_000
        );
        let inv = Invocation {
            stdin: None,
            program: "sh".into(),
            args: vec!["-c".into(), script],
            env: Vec::new(),
            create_dirs: Vec::new(),
            files: Vec::new(),
        };
        let (_tx, mut terminate) = watch::channel(false);
        let mut lens = Vec::new();
        struct Lens<'a>(&'a mut Vec<usize>);
        impl StreamMapper for Lens<'_> {
            fn stdout_line(&mut self, line: &str) -> Vec<RunnerEvent> {
                self.0.push(line.len());
                Vec::new()
            }
        }
        run_cli(&inv, dir.path(), &mut Lens(&mut lens), &mut terminate, |_| {}).await;
        assert_eq!(lens, vec![MAX_LINE_BYTES, 4]);
    }

    /// An open stdin: the prompt first, then the caller's lines once the CLI started, each
    /// reported once with the turn; closed at the CLI's `final`, so a CLI that reads until EOF
    /// (as Claude Code waits for more input) ends.
    #[tokio::test]
    async fn open_stdin_takes_lines_until_the_final_event() {
        let dir = tempfile::tempdir().unwrap();
        let got = dir.path().join("got");
        let script = format!(
            r#"IFS= read -r prompt; printf '%s\n' "$prompt" > {got}
echo '{{"type":"assistant","message":{{"id":"m1","content":[{{"type":"text","text":"one"}}]}}}}'
echo '{{"type":"system","subtype":"init","session_id":"s1"}}'
n=0
while IFS= read -r line; do
  n=$((n+1)); printf '%s\n' "$line" >> {got}
  if [ $n -eq 2 ]; then echo '{{"type":"result","subtype":"success","result":"done","num_turns":1}}'; fi
done
echo 'eof'
"#,
            got = got.display()
        );
        let inv = Invocation {
            program: "sh".into(),
            args: vec!["-c".into(), script],
            env: Vec::new(),
            create_dirs: Vec::new(),
            files: Vec::new(),
            stdin: Some("the prompt\n".into()),
        };
        let (tx, input) = mpsc::channel(4);
        for (id, line) in [("u1", "first"), ("u2", "second")] {
            tx.send(InputLine {
                id: id.into(),
                line: line.into(),
            })
            .await
            .unwrap();
        }
        let (_t, mut terminate) = watch::channel(false);
        let mut events = Vec::new();
        let mut mapper = crate::agent::claude::ClaudeMapper::default();
        let outcome = tokio::time::timeout(
            Duration::from_secs(20),
            run_cli_with(&inv, dir.path(), &mut mapper, &mut terminate, None, Some(input), |e| {
                events.push(e)
            }),
        )
        .await
        .expect("stdin was closed at the final event");
        assert_eq!(outcome.exit, Exit::Code(0));
        assert_eq!(std::fs::read_to_string(&got).unwrap(), "the prompt\nfirst\nsecond\n");
        let delivered: Vec<&RunnerEvent> = events
            .iter()
            .filter(|e| matches!(e, RunnerEvent::MessageDelivered { .. }))
            .collect();
        assert_eq!(
            delivered,
            [
                &RunnerEvent::MessageDelivered {
                    id: "u1".into(),
                    turn: 1
                },
                &RunnerEvent::MessageDelivered {
                    id: "u2".into(),
                    turn: 1
                },
            ]
        );
        assert!(events.contains(&log("eof")), "{events:?}");
        drop(tx);
    }

    /// Without stdin text the CLI's stdin is closed and lines offered are not taken.
    #[tokio::test]
    async fn closed_stdin_ignores_input() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Invocation {
            program: "sh".into(),
            args: vec!["-c".into(), "cat; echo done".into()],
            env: Vec::new(),
            create_dirs: Vec::new(),
            files: Vec::new(),
            stdin: None,
        };
        let (tx, input) = mpsc::channel(1);
        tx.send(InputLine {
            id: "u1".into(),
            line: "hello".into(),
        })
        .await
        .unwrap();
        let (_t, mut terminate) = watch::channel(false);
        let mut events = Vec::new();
        let outcome = run_cli_with(
            &inv,
            dir.path(),
            &mut ShellMapper,
            &mut terminate,
            None,
            Some(input),
            |e| events.push(e),
        )
        .await;
        assert_eq!(outcome.exit, Exit::Code(0));
        assert_eq!(events, vec![log("done")]);
    }

    /// Termination still stops a CLI whose stdin is open (and that waits on it).
    #[tokio::test]
    async fn termination_stops_a_cli_reading_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Invocation {
            program: "sh".into(),
            args: vec!["-c".into(), "trap '' TERM; while :; do sleep 1; done".into()],
            env: Vec::new(),
            create_dirs: Vec::new(),
            files: Vec::new(),
            stdin: Some("prompt\n".into()),
        };
        let (t, mut terminate) = watch::channel(false);
        let started = Instant::now();
        let mut mapper = ShellMapper;
        let run = run_cli(&inv, dir.path(), &mut mapper, &mut terminate, |_| {});
        let stop = async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            t.send(true).unwrap();
        };
        let (outcome, ()) = tokio::join!(run, stop);
        assert!(outcome.terminated);
        assert_eq!(outcome.exit, Exit::Signal(9), "SIGKILL after the grace");
        assert!(started.elapsed() < TERM_GRACE + Duration::from_secs(4));
    }

    /// The CLI sees `PWD` = its working directory, whatever the runner's own `PWD` is
    /// (`printenv` prints the inherited value as is; a shell would correct it).
    #[tokio::test]
    async fn pwd_is_the_working_directory() {
        let dir = tempfile::tempdir().unwrap();
        let events = run("printenv", &["PWD"], Vec::new(), dir.path()).await;
        assert_eq!(events, vec![log(&dir.path().display().to_string())]);
    }
}
