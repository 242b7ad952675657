//! Agent CLI sessions that outlive the pod, for `spec.resumeFrom`.
//!
//! **Save.** After Claude Code or Codex exits, the runner finds the session file of the id the
//! CLI reported (`agent_started.session_id`) — Claude Code:
//! `~/.claude/projects/<cwd with every non-alphanumeric character as '-'>/<id>.jsonl`
//! (`$CLAUDE_CONFIG_DIR` replaces `~/.claude`); Codex:
//! `$CODEX_HOME/sessions/YYYY/MM/DD/rollout-<time>-<id>.jsonl` — redacts it of the run's secret
//! values, and prints it as [`RunnerEvent::Session`] chunks (gzip + base64, like the patch).
//! The operator keeps them as the ConfigMap `<run>-session`.
//!
//! **Restore.** A run with `spec.resumeFrom` gets that ConfigMap mounted at
//! `$PADDOCK_RESUME_DIR` (keys `agent`, `sessionId`, `path`, `session.jsonl.gz`). Before the
//! CLI starts, [`restore`] writes the file back where the CLI looks for it (for Claude Code,
//! under the *current* working directory's project folder) and returns the id; the adapter
//! then adds `--resume <id>` (Claude Code) or runs `codex exec resume <id>` (Codex).

use paddock_crds::runner::vars;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use paddock_crds::artifacts;
use paddock_crds::events::RunnerEvent;

pub use crate::agent::claude::project_dir as claude_project_dir;
pub use crate::agent::RESUME_ID_ENV;
use crate::agent::{adapter, AgentKind, SessionFiles};
use crate::env::Env;

/// Largest session file saved or restored (bytes, uncompressed). A longer session is not
/// saved (an `error` event says so); the run itself is not affected.
pub const MAX_SESSION_BYTES: usize = 16 * 1024 * 1024;
/// Largest compressed session saved (bytes): it must fit a ConfigMap (1 MiB object limit).
pub const MAX_SESSION_GZ_BYTES: usize = artifacts::MAX_GZ_BYTES;
/// Where the operator mounts the session to resume (set only for `spec.resumeFrom` runs).
pub const RESUME_DIR_ENV: &str = vars::RESUME_DIR;

/// Where `kind`'s CLI keeps its sessions ([`crate::agent::Adapter::sessions`]).
fn files(kind: AgentKind) -> Option<&'static dyn SessionFiles> {
    adapter(kind.name()).sessions()
}

/// Whether the runner can save and resume sessions of `kind` (Claude Code and Codex).
pub fn supported(kind: AgentKind) -> bool {
    files(kind).is_some()
}

/// The directory the CLI keeps its state in: `$CLAUDE_CONFIG_DIR` or `~/.claude`;
/// `$CODEX_HOME` or `~/.codex`. `None` for other CLIs.
pub fn cli_root(kind: AgentKind, env: &Env) -> Option<PathBuf> {
    files(kind).map(|f| f.root(env))
}

/// A session id as the CLIs print them (UUIDs): letters, digits, `-` and `_`, 1 to 128
/// characters. Anything else is refused (it becomes a file name and an argument).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Finds the session file of `id` under `root`: `(absolute path, path relative to root)`.
pub fn find(kind: AgentKind, root: &Path, id: &str) -> Option<(PathBuf, String)> {
    if !valid_id(id) {
        return None;
    }
    let found = files(kind)?.find(root, id)?;
    let rel = found.strip_prefix(root).ok()?.to_string_lossy().into_owned();
    Some((found, rel))
}

/// The [`RunnerEvent::Session`] chunks of session `id` of `kind`, redacted of `secrets`; none
/// when the CLI wrote no session file (it ended before its first turn).
///
/// # Errors
/// A message when `kind` keeps no sessions, or the file is unreadable, larger than
/// [`MAX_SESSION_BYTES`], or compresses to more than [`MAX_SESSION_GZ_BYTES`].
pub fn save(kind: AgentKind, env: &Env, id: &str, secrets: &[String]) -> Result<Vec<RunnerEvent>, String> {
    let root = cli_root(kind, env).ok_or_else(|| format!("{} keeps no session", kind.as_str()))?;
    let Some((path, rel)) = find(kind, &root, id) else {
        return Ok(Vec::new());
    };
    let mut body = Vec::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(MAX_SESSION_BYTES as u64 + 1).read_to_end(&mut body))
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    if body.len() > MAX_SESSION_BYTES {
        return Err(format!(
            "session file is larger than {MAX_SESSION_BYTES} bytes; not saved"
        ));
    }
    let body = crate::diff::redact_bytes(&body, secrets);
    let gz = crate::diff::gzip(&body).map_err(|e| format!("compressing the session: {e}"))?;
    if gz.len() > MAX_SESSION_GZ_BYTES {
        return Err(format!(
            "session compresses to {} bytes, more than {MAX_SESSION_GZ_BYTES}; not saved",
            gz.len()
        ));
    }
    Ok(crate::diff::b64_chunks(&gz)
        .map(|(index, total, data)| RunnerEvent::Session {
            agent: kind.as_str().to_string(),
            session_id: id.to_string(),
            path: rel.clone(),
            index,
            total,
            data,
        })
        .collect())
}

fn read_key(dir: &Path, key: &str) -> Result<String, String> {
    std::fs::read_to_string(dir.join(key))
        .map(|s| s.trim().to_string())
        .map_err(|e| format!("{}: {e}", dir.join(key).display()))
}

/// Writes the session mounted at `$PADDOCK_RESUME_DIR` back where `kind`'s CLI looks for it,
/// for a CLI started in `cwd`. `Ok(None)` when the run resumes nothing; `Ok(Some(id))` when the
/// CLI should resume session `id`.
///
/// # Errors
/// A message when the mounted session is for another CLI, malformed, or cannot be written.
pub fn restore(kind: AgentKind, env: &Env, cwd: &Path) -> Result<Option<String>, String> {
    let Some(dir) = env.get(RESUME_DIR_ENV).map(PathBuf::from) else {
        return Ok(None);
    };
    let agent = read_key(&dir, artifacts::SESSION_AGENT_KEY)?;
    if agent != kind.as_str() {
        return Err(format!(
            "the session to resume was written by {agent}, not {}",
            kind.as_str()
        ));
    }
    let id = read_key(&dir, artifacts::SESSION_ID_KEY)?;
    if !valid_id(&id) {
        return Err(format!("invalid session id {id:?}"));
    }
    let rel = PathBuf::from(read_key(&dir, artifacts::SESSION_PATH_KEY)?);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!("invalid session path {}", rel.display()));
    }
    let root = cli_root(kind, env).ok_or_else(|| format!("{} cannot resume a session", kind.as_str()))?;
    let target = files(kind)
        .map(|f| f.restore_path(&root, &rel, &id, cwd))
        .unwrap_or_else(|| root.join(&rel));
    let gz = std::fs::read(dir.join(artifacts::SESSION_FILE_KEY))
        .map_err(|e| format!("{}: {e}", artifacts::SESSION_FILE_KEY))?;
    let mut body = Vec::new();
    GzDecoder::new(gz.as_slice())
        .take(MAX_SESSION_BYTES as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("{}: {e}", artifacts::SESSION_FILE_KEY))?;
    if body.len() > MAX_SESSION_BYTES {
        return Err(format!("session is larger than {MAX_SESSION_BYTES} bytes"));
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
    }
    std::fs::write(&target, body).map_err(|e| format!("{}: {e}", target.display()))?;
    Ok(Some(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn env(home: &Path, extra: &[(&str, &str)]) -> Env {
        let mut v = vec![("HOME".to_string(), home.to_string_lossy().into_owned())];
        v.extend(extra.iter().map(|(k, val)| (k.to_string(), val.to_string())));
        Env::from_pairs(v)
    }

    fn unpack(events: &[RunnerEvent]) -> (String, String, Vec<u8>) {
        let mut b64 = String::new();
        let mut meta = (String::new(), String::new());
        for ev in events {
            let RunnerEvent::Session {
                session_id, path, data, ..
            } = ev
            else {
                panic!("not a session chunk: {ev:?}")
            };
            meta = (session_id.clone(), path.clone());
            b64.push_str(data);
        }
        let gz = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
        let mut body = Vec::new();
        GzDecoder::new(gz.as_slice()).read_to_end(&mut body).unwrap();
        (meta.0, meta.1, body)
    }

    #[test]
    fn claude_sessions_round_trip_into_the_new_working_directory() {
        let old = tempfile::tempdir().unwrap();
        let id = "0b5c8a43-1d2e-4f60-9a7b-8c9d0e1f2a3b";
        let project = old.path().join(".claude/projects/-workspace-repo");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join(format!("{id}.jsonl")), "{\"text\":\"key sk-secret-1\"}\n").unwrap();
        let events = save(
            AgentKind::ClaudeCode,
            &env(old.path(), &[]),
            id,
            &["sk-secret-1".into()],
        )
        .unwrap();
        let (sid, rel, body) = unpack(&events);
        assert_eq!(sid, id);
        assert_eq!(rel, format!("projects/-workspace-repo/{id}.jsonl"));
        assert!(!String::from_utf8_lossy(&body).contains("sk-secret-1"), "redacted");

        // The mounted ConfigMap, as the operator writes it.
        let mount = tempfile::tempdir().unwrap();
        let gz = base64::engine::general_purpose::STANDARD
            .decode(
                events
                    .iter()
                    .map(|e| match e {
                        RunnerEvent::Session { data, .. } => data.as_str(),
                        _ => "",
                    })
                    .collect::<String>(),
            )
            .unwrap();
        for (k, v) in [("agent", "claude-code"), ("sessionId", id), ("path", rel.as_str())] {
            std::fs::write(mount.path().join(k), v).unwrap();
        }
        std::fs::write(mount.path().join("session.jsonl.gz"), gz).unwrap();
        let new = tempfile::tempdir().unwrap();
        let e = env(new.path(), &[(RESUME_DIR_ENV, mount.path().to_str().unwrap())]);
        let got = restore(AgentKind::ClaudeCode, &e, Path::new("/workspace/repo/sub")).unwrap();
        assert_eq!(got.as_deref(), Some(id));
        let restored = new
            .path()
            .join(format!(".claude/projects/-workspace-repo-sub/{id}.jsonl"));
        assert_eq!(std::fs::read(restored).unwrap(), body);

        // Another CLI's session, a traversal or no mount.
        assert!(restore(AgentKind::Codex, &e, Path::new("/w")).is_err());
        std::fs::write(mount.path().join("path"), "../../etc/x").unwrap();
        let codex_mount = mount.path().join("agent");
        std::fs::write(&codex_mount, "codex").unwrap();
        assert!(restore(AgentKind::Codex, &e, Path::new("/w"))
            .unwrap_err()
            .contains("invalid session path"));
        assert_eq!(
            restore(AgentKind::ClaudeCode, &env(new.path(), &[]), Path::new("/w")),
            Ok(None)
        );
    }

    #[test]
    fn codex_sessions_are_found_by_thread_id() {
        let home = tempfile::tempdir().unwrap();
        let id = "019a0c1e-7f3b-7c42-b1d5-3e2f1a0b9c8d";
        let day = home.path().join("codex/sessions/2026/11/22");
        std::fs::create_dir_all(&day).unwrap();
        std::fs::write(day.join(format!("rollout-2026-11-22T10-00-00-{id}.jsonl")), "{}\n").unwrap();
        std::fs::write(day.join("rollout-2026-11-22T09-00-00-other.jsonl"), "{}\n").unwrap();
        let e = env(
            home.path(),
            &[("CODEX_HOME", home.path().join("codex").to_str().unwrap())],
        );
        let events = save(AgentKind::Codex, &e, id, &[]).unwrap();
        let (_, rel, body) = unpack(&events);
        assert_eq!(
            rel,
            format!("sessions/2026/11/22/rollout-2026-11-22T10-00-00-{id}.jsonl")
        );
        assert_eq!(body, b"{}\n");
        assert_eq!(save(AgentKind::Codex, &e, "missing", &[]), Ok(vec![]));
        assert_eq!(save(AgentKind::Codex, &e, "../x", &[]), Ok(vec![]));
        assert!(save(AgentKind::Shell, &e, id, &[]).is_err());
    }

    #[test]
    fn project_dirs_and_ids() {
        assert_eq!(claude_project_dir(Path::new("/workspace/repo")), "-workspace-repo");
        assert_eq!(claude_project_dir(Path::new("/w/a_b.c")), "-w-a-b-c");
        assert!(valid_id("abc-DEF_1"));
        assert!(!valid_id("a/b") && !valid_id("") && !valid_id("a b"));
    }
}
