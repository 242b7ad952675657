//! A scripted model endpoint for Paddock's tests and demo.
//!
//! Real agent CLIs (Claude Code over the Anthropic Messages API, Codex over the OpenAI
//! Responses API, Gemini CLI over the Gemini API, others over Chat Completions) talk to this
//! server as if it were a model. Each request picks a script by its model name
//! (`scripted-<name>` → `DIR/<name>.json`) and plays the turn whose index is the number of
//! assistant turns already in the request's history, so the answer depends only on the request
//! (retries and restarts are deterministic). Requests that offer no tools are side requests
//! (titles, summaries) and get a short text. Generic actions (`write_file`, `shell`) become the
//! tool call the requesting CLI offers. See README.md for the script format.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod anthropic;
pub mod chat;
pub mod gemini;
pub mod reply;
pub mod responses;
pub mod script;
pub mod server;
pub mod sse;
pub mod tools;
