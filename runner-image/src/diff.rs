//! Diff step: the diffstat and unified patch of the run's commit against the commit the run
//! started from, and the patch's transport encoding: redacted → cut at
//! [`MAX_PATCH_BYTES`] (at a line end, flagged `patch_truncated`) → gzip → base64 (standard,
//! padded) → chunks of [`PATCH_CHUNK_BYTES`] emitted as `patch` events.

use std::io::Write;
use std::path::Path;

use base64::Engine as _;
use flate2::write::GzEncoder;
use flate2::Compression;
use git2::{DiffFormat, DiffOptions, Oid, Repository};
use paddock_crds::events::{redact, RunnerEvent, MAX_PATCH_BYTES, PATCH_CHUNK_BYTES, REDACTED};

/// Errors of the diff step.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// A git operation failed.
    #[error("{what}: {source}")]
    Git {
        /// What was being done.
        what: &'static str,
        /// libgit2's error.
        source: git2::Error,
    },
    /// Compressing the patch failed.
    #[error("compress the patch: {0}")]
    Compress(#[from] std::io::Error),
}

fn git(what: &'static str) -> impl FnOnce(git2::Error) -> DiffError {
    move |source| DiffError::Git { what, source }
}

/// Diffstat and patch of one commit range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffSummary {
    /// Files changed.
    pub files_changed: u32,
    /// Lines inserted.
    pub insertions: u32,
    /// Lines deleted.
    pub deletions: u32,
    /// The full unified patch (`git diff` format, binary files as "Binary files … differ").
    pub patch: Vec<u8>,
}

/// Computes the diff from `base` (or the empty tree when `None`) to `commit` in the repository
/// at `repo_path`.
///
/// # Errors
/// [`DiffError::Git`] when a commit or tree is missing or the diff fails.
pub fn compute_diff(repo_path: &Path, base: Option<Oid>, commit: Oid) -> Result<DiffSummary, DiffError> {
    let repo = Repository::open(repo_path).map_err(git("open the repository"))?;
    let new_tree = repo
        .find_commit(commit)
        .and_then(|c| c.tree())
        .map_err(git("read the commit"))?;
    let old_tree = match base {
        Some(b) => Some(
            repo.find_commit(b)
                .and_then(|c| c.tree())
                .map_err(git("read the base commit"))?,
        ),
        None => None,
    };
    let mut opts = DiffOptions::new();
    opts.show_binary(false);
    let diff = repo
        .diff_tree_to_tree(old_tree.as_ref(), Some(&new_tree), Some(&mut opts))
        .map_err(git("diff"))?;
    let stats = diff.stats().map_err(git("diffstat"))?;
    let mut patch = Vec::new();
    diff.print(DiffFormat::Patch, |_, _, line| {
        if matches!(line.origin(), '+' | '-' | ' ') {
            patch.push(line.origin() as u8);
        }
        patch.extend_from_slice(line.content());
        true
    })
    .map_err(git("render the patch"))?;
    let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    Ok(DiffSummary {
        files_changed: n(stats.files_changed()),
        insertions: n(stats.insertions()),
        deletions: n(stats.deletions()),
        patch,
    })
}

/// Replaces every occurrence of each secret in raw bytes (patches need not be UTF-8).
pub fn redact_bytes(data: &[u8], secrets: &[String]) -> Vec<u8> {
    if let Ok(text) = std::str::from_utf8(data) {
        return redact(text, secrets).into_bytes();
    }
    let mut out = data.to_vec();
    for s in secrets.iter().map(String::as_bytes).filter(|s| s.len() >= 4) {
        let mut result = Vec::with_capacity(out.len());
        let mut i = 0;
        while i < out.len() {
            if out[i..].starts_with(s) {
                result.extend_from_slice(REDACTED.as_bytes());
                i += s.len();
            } else {
                result.push(out[i]);
                i += 1;
            }
        }
        out = result;
    }
    out
}

/// The encoded patch.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedPatch {
    /// Size of the full patch in bytes, before redaction and truncation.
    pub patch_bytes: u64,
    /// Whether it was cut at [`MAX_PATCH_BYTES`].
    pub truncated: bool,
    /// The `patch` events, in order.
    pub events: Vec<RunnerEvent>,
}

/// Encodes `patch` for the event stream (see the module docs). An empty patch has no chunks.
///
/// # Errors
/// [`DiffError::Compress`] if gzip fails (it writes to memory, so only on allocation failure).
pub fn encode_patch(patch: &[u8], secrets: &[String]) -> Result<EncodedPatch, DiffError> {
    let patch_bytes = patch.len() as u64;
    let mut body = redact_bytes(patch, secrets);
    let truncated = body.len() > MAX_PATCH_BYTES;
    if truncated {
        let cut = body[..MAX_PATCH_BYTES]
            .iter()
            .rposition(|&b| b == b'\n')
            .map(|i| i + 1)
            .unwrap_or(MAX_PATCH_BYTES);
        body.truncate(cut);
    }
    if body.is_empty() {
        return Ok(EncodedPatch {
            patch_bytes,
            truncated,
            events: Vec::new(),
        });
    }
    let events = b64_chunks(&gzip(&body)?)
        .map(|(index, total, data)| RunnerEvent::Patch { index, total, data })
        .collect();
    Ok(EncodedPatch {
        patch_bytes,
        truncated,
        events,
    })
}

/// Gzip of `body` (default level, in memory).
///
/// # Errors
/// Only on allocation failure (it writes to memory).
pub fn gzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(body)?;
    gz.finish()
}

/// `data` as standard base64 cut into [`PATCH_CHUNK_BYTES`] pieces: `(index from 0, total,
/// piece)`, the payload of `patch` and `session` chunk events.
pub fn b64_chunks(data: &[u8]) -> impl Iterator<Item = (u32, u32, String)> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(data);
    let pieces: Vec<String> = b64
        .as_bytes()
        .chunks(PATCH_CHUNK_BYTES)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect();
    let total = u32::try_from(pieces.len()).unwrap_or(u32::MAX);
    pieces
        .into_iter()
        .enumerate()
        .map(move |(i, piece)| (u32::try_from(i).unwrap_or(u32::MAX), total, piece))
}

/// Reassembles `patch` events (in order) into the patch bytes: concatenated base64 → gunzip.
/// The inverse of [`encode_patch`]; used by tests and by readers.
///
/// # Errors
/// A message when the base64 or gzip data is invalid.
pub fn decode_patch<'a>(chunks: impl IntoIterator<Item = &'a str>) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let b64: String = chunks.into_iter().collect();
    let gz = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(ev: &RunnerEvent) -> &str {
        match ev {
            RunnerEvent::Patch { data, .. } => data,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn round_trip_and_chunking() {
        // Incompressible-ish content so the output spans several chunks.
        let mut patch = Vec::new();
        let mut x: u64 = 1;
        while patch.len() < 100_000 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            patch.extend_from_slice(format!("+{x:x}\n").as_bytes());
        }
        let enc = encode_patch(&patch, &[]).unwrap();
        assert!(enc.events.len() > 1);
        assert!(!enc.truncated);
        assert_eq!(enc.patch_bytes, patch.len() as u64);
        for (i, ev) in enc.events.iter().enumerate() {
            let RunnerEvent::Patch { index, total, data } = ev else {
                panic!()
            };
            assert_eq!(*index as usize, i);
            assert_eq!(*total as usize, enc.events.len());
            assert!(data.len() <= PATCH_CHUNK_BYTES);
        }
        assert_eq!(decode_patch(enc.events.iter().map(data)).unwrap(), patch);
    }

    #[test]
    fn redacts_and_truncates() {
        let mut patch = b"+key=sk-verysecret\n".to_vec();
        patch.extend(std::iter::repeat_n(b"+0123456789\n".to_vec(), MAX_PATCH_BYTES / 12 + 10).flatten());
        let enc = encode_patch(&patch, &["sk-verysecret".to_string()]).unwrap();
        assert!(enc.truncated);
        let back = decode_patch(enc.events.iter().map(data)).unwrap();
        assert!(back.len() <= MAX_PATCH_BYTES && back.ends_with(b"\n"));
        assert!(back.starts_with(b"+key=[REDACTED]\n"));
        assert!(encode_patch(b"", &[]).unwrap().events.is_empty());
        assert_eq!(
            redact_bytes(b"\xff sk-verysecret \xfe", &["sk-verysecret".into()]),
            b"\xff [REDACTED] \xfe".to_vec()
        );
    }
}
