//! The container's environment as the runner reads it: the bottom layer every command and
//! adapter uses (it depends on nothing of the crate).

use paddock_crds::runner::vars;
use std::collections::BTreeMap;

/// A snapshot of the process environment (non-UTF-8 values are converted lossily).
#[derive(Clone, Debug, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
    /// Variables that did not come from the process environment (a warm pod's claim); they
    /// are passed on to the agent CLI's process explicitly.
    overlay: BTreeMap<String, String>,
}

impl Env {
    /// The current process environment.
    pub fn from_process() -> Self {
        Self::from_pairs(
            std::env::vars_os().map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned())),
        )
    }

    /// An environment from `(name, value)` pairs (tests).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect(),
            overlay: BTreeMap::new(),
        }
    }

    /// This environment with `vars` set on top (they win over the process's), as a warm pod's
    /// containers see it once claimed ([`crate::warm`]).
    pub fn with_overlay(&self, vars: &BTreeMap<String, String>) -> Self {
        let mut out = self.clone();
        for (k, v) in vars {
            out.vars.insert(k.clone(), v.clone());
            out.overlay.insert(k.clone(), v.clone());
        }
        out
    }

    /// The variables set by [`Env::with_overlay`] (empty in a cold pod), for child processes
    /// that would otherwise only inherit the process environment.
    pub fn overlay(&self) -> &BTreeMap<String, String> {
        &self.overlay
    }

    /// The value of `name` when set and not empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Whether `name` is set to `true` (any case): the runner's flags (`PADDOCK_PLAN_REVIEW`,
    /// `PADDOCK_QUESTIONS`, …) as the adapters and the MCP server read them. Anything else,
    /// unset included, is `false` (`paddock-runner run` refuses other values first,
    /// [`crate::config::parse_bool`]).
    pub fn is_true(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    /// The secret values to redact: the values (at least 4 bytes long) of the variables named
    /// in the comma-separated `PADDOCK_REDACT_ENV`, longest first (so a secret containing
    /// another is replaced whole).
    pub fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .get(vars::REDACT_ENV)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .filter_map(|n| self.get(n))
            .filter(|v| v.len() >= 4)
            .map(str::to_string)
            .collect();
        out.sort_by_key(|s| std::cmp::Reverse(s.len()));
        out.dedup();
        out
    }
}
