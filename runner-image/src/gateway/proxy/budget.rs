//! The run's usage and budgets ([`Ledger`]): the settled totals, a reservation for every model
//! call in flight, and the state file that carries both across a restart of the gateway.
//!
//! **Reservations.** Before a metered call is forwarded, its worst case
//! ([`super::super::meter::Estimate`]: USD and output tokens) is reserved. A call is admitted
//! while every budget still has room that no call in flight has claimed: settled + reserved <
//! limit. Otherwise it waits for calls in flight to settle (then is admitted, or refused once a
//! limit is reached), at most the queue wait, then gets 429. When it ends, the reservation is
//! replaced by what the response reports; a metered response that reports no usage (or whose
//! outcome is unknown: the gateway stopped, the upstream failed mid-way) is charged its whole
//! reservation. So whatever the agent sends, in parallel or not, the calls admitted after a
//! limit is reached are none, and the spend beyond a limit is at most the worst case of the one
//! call that crossed it (when the vendor's usage stays within the estimate: see
//! `meter/request.rs` for how the input is bounded).
//!
//! **State file** (`<PADDOCK_GATEWAY_STATE_DIR>/paddock-gateway-usage.json`, written to a
//! temporary file and renamed over it after every reservation and settlement): the totals and
//! the reservations in flight. At start the gateway loads it; reservations left in it belong to
//! calls whose outcome was lost with the previous process and are charged in full. A file that
//! cannot be read or parsed refuses every model call (fail closed); one written for another run
//! or attempt is replaced.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use paddock_crds::gateway::{GatewayLine, UsageTotals};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::super::meter::{Estimate, Tokens};

/// The state file's format version.
const STATE_VERSION: u32 = 1;

/// Cumulative usage of the run's model calls.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    /// Tokens.
    pub tokens: Tokens,
    /// USD of the priced calls.
    pub cost_usd: f64,
    /// Model calls metered (estimated ones included).
    pub requests: u64,
    /// Of those, calls charged their reservation because their usage is unknown.
    pub estimated: u64,
    /// Calls the gateway refused (endpoint, body, budget, busy).
    pub refused: u64,
    /// Models without a price (their calls count tokens, not USD).
    pub unpriced: BTreeSet<String>,
    /// Why further calls are refused, once a budget is reached.
    pub exceeded: Option<String>,
}

/// The totals as the state file stores them (the field names of the `gateway_usage` line).
#[derive(Serialize, Deserialize)]
struct FlatTotals {
    input_tokens: u64,
    output_tokens: u64,
    cache_read_tokens: u64,
    cache_write_tokens: u64,
    cost_usd: f64,
    requests: u64,
    estimated_requests: u64,
    refused_requests: u64,
    unpriced_models: BTreeSet<String>,
    budget_exceeded: Option<String>,
}

impl From<&Totals> for FlatTotals {
    fn from(t: &Totals) -> Self {
        FlatTotals {
            input_tokens: t.tokens.input,
            output_tokens: t.tokens.output,
            cache_read_tokens: t.tokens.cache_read,
            cache_write_tokens: t.tokens.cache_write,
            cost_usd: t.cost_usd,
            requests: t.requests,
            estimated_requests: t.estimated,
            refused_requests: t.refused,
            unpriced_models: t.unpriced.clone(),
            budget_exceeded: t.exceeded.clone(),
        }
    }
}

impl From<FlatTotals> for Totals {
    fn from(f: FlatTotals) -> Self {
        Totals {
            tokens: Tokens {
                input: f.input_tokens,
                output: f.output_tokens,
                cache_read: f.cache_read_tokens,
                cache_write: f.cache_write_tokens,
            },
            cost_usd: f.cost_usd,
            requests: f.requests,
            estimated: f.estimated_requests,
            refused: f.refused_requests,
            unpriced: f.unpriced_models,
            exceeded: f.budget_exceeded,
        }
    }
}

/// One call's reservation: its worst case.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    /// The model the request names.
    pub model: Option<String>,
    /// Input tokens at most.
    pub input_tokens: u64,
    /// Output tokens at most.
    pub output_tokens: u64,
    /// USD at most; `None` when the model has no price.
    pub cost_usd: Option<f64>,
}

impl Reservation {
    /// The reservation of a call estimated as `e` for `model`.
    pub fn new(model: Option<&str>, e: Estimate) -> Self {
        Reservation {
            model: model.map(str::to_string),
            input_tokens: e.input_tokens,
            output_tokens: e.output_tokens,
            cost_usd: e.cost_usd,
        }
    }
}

/// What a call was billed, for its settlement.
#[derive(Clone, Debug, PartialEq)]
pub enum Billed {
    /// The usage the response reported, priced (`None`: the model has no price).
    Usage {
        /// The model (the response's, else the request's).
        model: String,
        /// Tokens.
        tokens: Tokens,
        /// USD.
        cost_usd: Option<f64>,
    },
    /// Usage unknown although the call may have been billed: charged the reservation.
    Unknown,
    /// Not billed (the upstream refused it or was never reached): released.
    Nothing,
}

/// The run's budgets.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Limits {
    /// `budget.maxCostUSD`, USD.
    pub max_cost_usd: Option<f64>,
    /// `budget.maxOutputTokens`, tokens.
    pub max_output_tokens: Option<u64>,
}

/// Whether a call may go.
#[derive(Debug)]
pub enum Admission {
    /// Reserved: settle the [`Ticket`] when the call ends (dropping it charges the reservation).
    Go(Ticket),
    /// A budget is reached: no further model calls (the message says which).
    Exhausted(String),
    /// Calls in flight still hold the budget's remainder after the queue wait.
    Busy,
}

#[derive(Serialize, Deserialize)]
struct Saved {
    version: u32,
    owner: String,
    totals: FlatTotals,
    in_flight: Vec<Reservation>,
}

#[derive(Debug, Default)]
struct State {
    totals: Totals,
    in_flight: BTreeMap<u64, Reservation>,
    next: u64,
}

/// The run's usage, the reservations in flight and their state file.
#[derive(Debug)]
pub struct Ledger {
    state: Mutex<State>,
    settled: Notify,
    file: PathBuf,
    owner: String,
    limits: Limits,
    /// Where `budget-exceeded` is written for the runner.
    control_dir: PathBuf,
}

/// A call's claim on the budget; settles as [`Billed::Unknown`] if dropped unsettled.
#[derive(Debug)]
pub struct Ticket {
    ledger: Arc<Ledger>,
    id: u64,
    /// The reservation.
    pub reserved: Reservation,
    settled: bool,
}

impl Ticket {
    /// Ends the call: replaces the reservation by what it was `billed`.
    pub fn settle(mut self, billed: Billed) {
        self.settled = true;
        self.ledger.settle(self.id, billed);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.settled {
            self.ledger.settle(self.id, Billed::Unknown);
        }
    }
}

fn out(line: &Value) {
    println!("{line}");
}

impl Ledger {
    /// Opens the ledger of `owner` with its state file in `dir` (created if missing), loading
    /// the totals a previous gateway process left there and charging its calls in flight.
    pub fn open(dir: &Path, owner: &str, limits: Limits, control_dir: &Path) -> Arc<Ledger> {
        let file = dir.join(super::config::STATE_FILE);
        let mut state = State::default();
        match std::fs::read(&file) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => state.totals.exceeded = Some(unreadable(&file, &e.to_string())),
            Ok(bytes) => match serde_json::from_slice::<Saved>(&bytes) {
                Ok(saved) if saved.owner != owner => eprintln!(
                    "paddock-runner gateway: {} belongs to {:?}, not {owner:?}: starting from zero",
                    file.display(),
                    saved.owner
                ),
                Ok(saved) if saved.version == STATE_VERSION => {
                    state.totals = saved.totals.into();
                    for r in saved.in_flight {
                        charge(&mut state.totals, &r, &Billed::Unknown);
                    }
                }
                Ok(saved) => {
                    let why = format!("format version {} is not {STATE_VERSION}", saved.version);
                    state.totals.exceeded = Some(unreadable(&file, &why));
                }
                Err(e) => state.totals.exceeded = Some(unreadable(&file, &e.to_string())),
            },
        }
        let restored = state.totals.requests > 0 || state.totals.exceeded.is_some();
        let ledger = Arc::new(Ledger {
            state: Mutex::new(state),
            settled: Notify::new(),
            file,
            owner: owner.to_string(),
            limits,
            control_dir: control_dir.to_path_buf(),
        });
        {
            let mut st = ledger.lock();
            let newly = ledger.check_limits(&mut st);
            ledger.persist(&mut st);
            if restored || newly {
                out(&line(&st));
            }
            if newly {
                ledger.mark_exceeded(&st);
            }
        }
        ledger
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The settled totals.
    pub fn totals(&self) -> Totals {
        self.lock().totals.clone()
    }

    /// Why model calls are refused, once a budget is reached.
    pub fn exceeded(&self) -> Option<String> {
        self.lock().totals.exceeded.clone()
    }

    /// Counts a call the gateway refused.
    pub fn count_refusal(&self) {
        self.lock().totals.refused += 1;
    }

    /// Reserves `r`, waiting up to `wait` for calls in flight to settle while they hold the
    /// budget's remainder.
    pub async fn reserve(self: &Arc<Self>, r: Reservation, wait: Duration) -> Admission {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.try_reserve(&r) {
                Some(Ok(id)) => {
                    return Admission::Go(Ticket {
                        ledger: self.clone(),
                        id,
                        reserved: r,
                        settled: false,
                    })
                }
                Some(Err(why)) => return Admission::Exhausted(why),
                None => {}
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Admission::Busy;
            }
        }
    }

    /// `Some(Ok(id))`: reserved; `Some(Err(why))`: a budget is reached; `None`: wait.
    fn try_reserve(&self, r: &Reservation) -> Option<Result<u64, String>> {
        let mut st = self.lock();
        if let Some(why) = &st.totals.exceeded {
            return Some(Err(why.clone()));
        }
        let reserved_usd = st.in_flight.values().filter_map(|r| r.cost_usd).fold(0.0, |a, b| a + b);
        let reserved_out: u64 = st.in_flight.values().map(|r| r.output_tokens).sum();
        let cost_room = self
            .limits
            .max_cost_usd
            .is_none_or(|m| st.totals.cost_usd + reserved_usd < m);
        let out_room = self
            .limits
            .max_output_tokens
            .is_none_or(|m| st.totals.tokens.output.saturating_add(reserved_out) < m);
        if !(cost_room && out_room) {
            // Nothing in flight and no room: the limit itself is reached (checked on settle).
            return st
                .in_flight
                .is_empty()
                .then(|| Err("the budget has no room left".into()));
        }
        st.next += 1;
        let id = st.next;
        st.in_flight.insert(id, r.clone());
        self.persist(&mut st);
        // The state file could not be written: the call does not go.
        match st.totals.exceeded.clone() {
            Some(why) => {
                st.in_flight.remove(&id);
                Some(Err(why))
            }
            None => Some(Ok(id)),
        }
    }

    fn settle(&self, id: u64, billed: Billed) {
        let mut st = self.lock();
        let Some(r) = st.in_flight.remove(&id) else { return };
        if billed != Billed::Nothing {
            charge(&mut st.totals, &r, &billed);
        }
        let newly = self.check_limits(&mut st);
        self.persist(&mut st);
        if billed != Billed::Nothing || newly {
            out(&line(&st));
        }
        if newly {
            self.mark_exceeded(&st);
        }
        drop(st);
        self.settled.notify_waiters();
    }

    /// Sets `exceeded` when a limit is reached; `true` when this call did.
    fn check_limits(&self, st: &mut State) -> bool {
        if st.totals.exceeded.is_some() {
            return false;
        }
        let t = &st.totals;
        if let Some(m) = self.limits.max_cost_usd.filter(|m| t.cost_usd >= *m) {
            st.totals.exceeded = Some(format!(
                "budget.maxCostUSD {m} reached: the model calls cost {:.6} USD",
                t.cost_usd
            ));
        } else if let Some(m) = self.limits.max_output_tokens.filter(|m| t.tokens.output >= *m) {
            st.totals.exceeded = Some(format!(
                "budget.maxOutputTokens {m} reached: {} output tokens",
                t.tokens.output
            ));
        }
        st.totals.exceeded.is_some()
    }

    /// Writes the state file; a failure stops further model calls (the next restart could not
    /// know what was spent).
    fn persist(&self, st: &mut State) {
        let saved = Saved {
            version: STATE_VERSION,
            owner: self.owner.clone(),
            totals: (&st.totals).into(),
            in_flight: st.in_flight.values().cloned().collect(),
        };
        let written = serde_json::to_vec(&saved)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                if let Some(dir) = self.file.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                crate::workspace::write_atomic(&self.file, &bytes)
            });
        if let Err(e) = written {
            if st.totals.exceeded.is_none() {
                st.totals.exceeded = Some(format!(
                    "the gateway cannot record usage in {}: {e}",
                    self.file.display()
                ));
                self.mark_exceeded(st);
            }
        }
    }

    /// Writes `<control>/budget-exceeded` for the runner, which stops the agent.
    fn mark_exceeded(&self, st: &State) {
        let marker = json!({"reason": "BudgetExceeded", "message": st.totals.exceeded});
        let _ = std::fs::create_dir_all(&self.control_dir);
        let _ =
            crate::workspace::write_atomic(&self.control_dir.join("budget-exceeded"), marker.to_string().as_bytes());
    }
}

fn unreadable(file: &Path, why: &str) -> String {
    format!(
        "the gateway's usage record {} is unreadable ({why}); model calls are refused",
        file.display()
    )
}

/// Adds a call's usage (or, for [`Billed::Unknown`], its reservation) to `t`.
fn charge(t: &mut Totals, r: &Reservation, billed: &Billed) {
    let (model, tokens, cost) = match billed {
        Billed::Usage {
            model,
            tokens,
            cost_usd,
        } => (model.clone(), *tokens, *cost_usd),
        Billed::Unknown | Billed::Nothing => {
            t.estimated += 1;
            let tokens = Tokens {
                input: r.input_tokens,
                output: r.output_tokens,
                ..Tokens::default()
            };
            (r.model.clone().unwrap_or_else(|| "unknown".into()), tokens, r.cost_usd)
        }
    };
    t.tokens.input = t.tokens.input.saturating_add(tokens.input);
    t.tokens.output = t.tokens.output.saturating_add(tokens.output);
    t.tokens.cache_read = t.tokens.cache_read.saturating_add(tokens.cache_read);
    t.tokens.cache_write = t.tokens.cache_write.saturating_add(tokens.cache_write);
    t.requests += 1;
    match cost {
        Some(c) => t.cost_usd += c,
        None => {
            t.unpriced.insert(model);
        }
    }
}

/// The `gateway_usage` line: the totals, plus what calls in flight have reserved.
fn line(st: &State) -> Value {
    let t = &st.totals;
    GatewayLine::GatewayUsage(UsageTotals {
        input_tokens: t.tokens.input,
        output_tokens: t.tokens.output,
        cache_read_tokens: t.tokens.cache_read,
        cache_write_tokens: t.tokens.cache_write,
        cost_usd: Some(t.cost_usd),
        requests: t.requests,
        estimated_requests: t.estimated,
        refused_requests: t.refused,
        in_flight_requests: st.in_flight.len() as u64,
        reserved_cost_usd: st.in_flight.values().filter_map(|r| r.cost_usd).fold(0.0, |a, b| a + b),
        unpriced_models: t.unpriced.clone(),
        budget_exceeded: t.exceeded.clone(),
    })
    .to_value()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(cost: f64, out: u64) -> Reservation {
        Reservation {
            model: Some("scripted-x".into()),
            input_tokens: 100,
            output_tokens: out,
            cost_usd: Some(cost),
        }
    }

    fn usage(cost: f64, out: u64) -> Billed {
        Billed::Usage {
            model: "scripted-x".into(),
            tokens: Tokens {
                input: 10,
                output: out,
                ..Tokens::default()
            },
            cost_usd: Some(cost),
        }
    }

    fn go(a: Admission) -> Ticket {
        match a {
            Admission::Go(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn reservations_hold_the_remainder_and_settle_to_the_usage() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_cost_usd: Some(1.0),
            max_output_tokens: None,
        };
        let l = Ledger::open(dir.path(), "o", limits, &dir.path().join("c"));
        let wait = Duration::from_millis(50);
        let a = go(l.reserve(res(0.6, 10), wait).await);
        // 0.6 of 1.0 is claimed: the next call still finds room, the third waits, then 429.
        let b = go(l.reserve(res(0.6, 10), wait).await);
        assert!(matches!(l.reserve(res(0.1, 10), wait).await, Admission::Busy));
        a.settle(usage(0.2, 5));
        b.settle(Billed::Nothing);
        assert_eq!((l.totals().cost_usd, l.totals().requests), (0.2, 1));
        // A call whose usage is unknown is charged its reservation, and crosses the limit.
        drop(go(l.reserve(res(0.9, 10), wait).await));
        let t = l.totals();
        assert!((t.cost_usd - 1.1).abs() < 1e-12 && t.estimated == 1, "{t:?}");
        assert!(t.exceeded.as_deref().unwrap().contains("maxCostUSD 1"));
        assert!(matches!(l.reserve(res(0.0, 0), wait).await, Admission::Exhausted(_)));
        assert!(dir.path().join("c/budget-exceeded").exists());
    }

    #[tokio::test]
    async fn a_waiting_call_goes_when_room_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_cost_usd: None,
            max_output_tokens: Some(100),
        };
        let l = Ledger::open(dir.path(), "o", limits, dir.path());
        let a = go(l.reserve(res(0.0, 100), Duration::ZERO).await);
        let waiting = tokio::spawn({
            let l = l.clone();
            async move { matches!(l.reserve(res(0.0, 10), Duration::from_secs(10)).await, Admission::Go(_)) }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        a.settle(usage(0.0, 3));
        assert!(waiting.await.unwrap());
    }

    #[test]
    fn the_state_survives_a_restart_and_lost_calls_are_charged() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_cost_usd: Some(1.0),
            max_output_tokens: None,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        {
            let l = Ledger::open(dir.path(), "run/1", limits, dir.path());
            go(rt.block_on(l.reserve(res(0.1, 1), Duration::ZERO))).settle(usage(0.3, 7));
            // In flight when the process dies: the ticket is never settled or dropped.
            std::mem::forget(go(rt.block_on(l.reserve(res(0.25, 9), Duration::ZERO))));
        }
        let l = Ledger::open(dir.path(), "run/1", limits, dir.path());
        let t = l.totals();
        assert!((t.cost_usd - 0.55).abs() < 1e-12, "{t:?}");
        assert_eq!((t.requests, t.estimated, t.tokens.output), (2, 1, 16));
        // Another run's file is not taken over; an unreadable one refuses every call.
        assert_eq!(
            Ledger::open(dir.path(), "run/2", limits, dir.path()).totals().requests,
            0
        );
        std::fs::write(dir.path().join(super::super::config::STATE_FILE), "{").unwrap();
        let l = Ledger::open(dir.path(), "run/2", limits, dir.path());
        assert!(l.exceeded().unwrap().contains("unreadable"));
    }
}
