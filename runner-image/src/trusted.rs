//! Files the trusted containers (`clone`, `gateway`) share in their own `/tmp` volume, which the
//! agent container does not mount: the run's base commit, recorded by the clone step and read
//! by the gateway's push service ([`crate::gateway::push`]).

use paddock_crds::runner::vars;
use std::path::PathBuf;

use git2::Oid;

use crate::env::Env;
use crate::workspace::write_atomic;

/// Default directory of the trusted containers' shared files (their own `/tmp` volume, which
/// the agent container does not mount); `PADDOCK_TRUSTED_DIR` overrides it.
pub const DEFAULT_TRUSTED_DIR: &str = "/tmp/paddock-trusted";

fn trusted_dir(env: &Env) -> PathBuf {
    PathBuf::from(env.get(vars::TRUSTED_DIR).unwrap_or(DEFAULT_TRUSTED_DIR))
}

/// Records `commit` as the run's base for the gateway (called by the trusted clone step, in the
/// `clone` container or, in a warm pod, the gateway itself).
///
/// # Errors
/// When the trusted directory cannot be written.
pub fn record_base(env: &Env, commit: &str) -> std::io::Result<()> {
    let dir = trusted_dir(env);
    std::fs::create_dir_all(&dir)?;
    write_atomic(&dir.join("base-commit"), format!("{commit}\n").as_bytes())
}

/// The base recorded by [`record_base`], if any.
pub fn read_base(env: &Env) -> Option<Oid> {
    std::fs::read_to_string(trusted_dir(env).join("base-commit"))
        .ok()
        .and_then(|s| Oid::from_str(s.trim()).ok())
}
