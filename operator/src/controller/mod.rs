//! One controller per kind, each shaped the same way: reconcile (I/O at the edges), pure
//! builders and status functions, and an error policy.

pub mod agentrun;
pub mod agentrunset;
pub mod agentruntrigger;
pub mod approvalgate;
pub mod runnerpool;
