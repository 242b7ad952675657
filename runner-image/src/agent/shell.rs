//! The `shell` adapter: `sh -c "$PADDOCK_PROMPT"`. Every stdout and stderr line becomes a `log`
//! event (bounded by the emitter); there is no session, usage or final text. A non-zero exit
//! code fails the run with `AgentFailed` (handled by [`crate::run`]).

use paddock_crds::events::RunnerEvent;

use paddock_crds::AgentName;

use super::adapter::Adapter;
use super::spec::{AgentKind, AgentSpec, Invocation};
use super::stream::{log_event, StreamMapper};
use crate::env::Env;

/// Maps shell output lines to `log` events.
#[derive(Debug, Default)]
pub struct ShellMapper;

impl StreamMapper for ShellMapper {
    fn stdout_line(&mut self, line: &str) -> Vec<RunnerEvent> {
        log_event("stdout", line)
    }
}

/// The `shell` adapter ([`AgentName::Shell`]): never `PADDOCK_AGENT_BIN`, always `sh`.
#[derive(Debug, Default)]
pub struct Shell;

impl Adapter for Shell {
    fn name(&self) -> AgentName {
        AgentName::Shell
    }

    /// `sh -c <prompt>`.
    fn invocation(&self, spec: &AgentSpec, _env: &Env) -> Invocation {
        Invocation {
            stdin: None,
            program: "sh".into(),
            args: vec!["-c".into(), spec.prompt.clone()],
            env: Vec::new(),
            create_dirs: Vec::new(),
            files: Vec::new(),
        }
    }

    fn mapper(&self, _kind: AgentKind, _model: Option<String>) -> Box<dyn StreamMapper> {
        Box::new(ShellMapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_logs() {
        let mut m = ShellMapper;
        assert_eq!(
            m.stdout_line("hi"),
            vec![RunnerEvent::Log {
                stream: "stdout".into(),
                text: "hi".into()
            }]
        );
        assert_eq!(
            m.stderr_line("oops"),
            vec![RunnerEvent::Log {
                stream: "stderr".into(),
                text: "oops".into()
            }]
        );
        assert_eq!(m.stdout_line("  "), vec![]);
        assert_eq!(m.end_of_stream(), vec![]);
    }
}
