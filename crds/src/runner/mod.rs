//! The contract between the operator and the runner binary in a runner pod: the names of the
//! environment variables ([`vars`]), the run's settings as the operator renders them into the
//! pod ([`RunnerConfig`]) and the claim that hands them to a warm pod ([`Claim`]). Both
//! binaries use these items; neither spells a `PADDOCK_*` name of its own.

pub mod claim;
pub mod config;
pub mod vars;

pub use claim::{Claim, ClaimError, ClaimPush, CLAIM_PATH, CLAIM_PORT, MAX_CLAIM_PUSH_BYTES};
pub use config::{
    literal, AgentConfig, AllowedHost, GatewayConfig, Identity, Prompt, RunnerConfig, SharedConfig, TrustedConfig,
};
