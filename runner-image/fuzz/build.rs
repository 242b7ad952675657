//! Lists the agent names `AgentKind::from_str` accepts, read from the runner's
//! `src/agent/mod.rs` (every `"<name>" => Ok(AgentKind::…)` arm), so an adapter added there is
//! fuzzed without editing the fuzz target. Writes `$OUT_DIR/agent_names.rs`: a
//! `const AGENT_NAMES: &[&str]`. The target still parses each name and skips the ones that do
//! not parse, so a stale list cannot make it fail.
use std::{env, fs, path::Path};

fn main() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../src/agent/mod.rs");
    println!("cargo:rerun-if-changed={}", src.display());
    let text = fs::read_to_string(&src).unwrap_or_default();
    let mut names: Vec<String> = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if !line.contains("=> Ok(AgentKind::") || !line.starts_with('"') {
            continue;
        }
        if let Some(name) = line[1..].split('"').next() {
            if !name.is_empty() && !names.iter().any(|n| n == name) {
                names.push(name.to_string());
            }
        }
    }
    let out = Path::new(&env::var("OUT_DIR").expect("OUT_DIR")).join("agent_names.rs");
    let list: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    fs::write(out, format!("const AGENT_NAMES: &[&str] = &[{}];\n", list.join(", "))).expect("write agent_names.rs");
}
