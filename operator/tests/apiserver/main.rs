//! The envtest tier: the operator against a real kube-apiserver and etcd, with no kubelet,
//! scheduler or controller-manager (e2e/envtest.sh starts them, installs the CRDs and the
//! chart's RBAC and approval policy, and runs this binary; `make envtest`). Between the unit
//! tests (no API server) and the e2e suite (a whole cluster): real admission and real
//! controller behaviour through the API, in seconds.
//!
//! Each test creates its own namespace; the tests that need the operator start the binary
//! (`CARGO_BIN_EXE_paddock-operator`) watching only that namespace, as the chart's
//! ServiceAccount, and stop it when they end.
#![forbid(unsafe_code)]

mod admission;
mod approvals;
mod harness;
mod runs;
