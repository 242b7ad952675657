//! The gateway's usage meter (`gateway::meter::UsageParser`) on arbitrary response bodies, fed
//! in arbitrary chunks.
//!
//! Input layout: byte 0 chooses the API (bits 0–1: Anthropic Messages, OpenAI Chat, OpenAI
//! Responses, Gemini), SSE or JSON (bit 2), and how many times the body is repeated (bits 3–6:
//! 2^n times, n at most 9, so lines beyond the parser's 1 MiB SSE line cap and bodies beyond its
//! 8 MiB JSON cap are reachable with short inputs);
//! bytes 1–2 seed the chunk sizes (byte 1 picks the largest chunk, 2^(b % 17) bytes); the rest
//! is the body.
//!
//! Properties: no panic; the result (model, tokens) does not depend on how the body was split
//! (compared with one `feed` of the whole body); the heap the parser keeps between chunks
//! (measured with a counting allocator) stays within the documented bounds — one SSE line
//! (1 MiB, ×2 for `Vec` growth, plus the model name) or the JSON body (8 MiB, ×2) — however
//! long the body is.
#![no_main]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use libfuzzer_sys::fuzz_target;
use paddock_runner::gateway::meter::{ModelApi, UsageParser};

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: delegates to `System`; only adds bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Relaxed);
            LIVE.fetch_add(new_size, Relaxed);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const MIB: usize = 1 << 20;
/// What an SSE parser may keep: a partial line below the 1 MiB cap in a `Vec` that may have
/// doubled past it, and a model name taken from a line under the cap.
const SSE_BOUND: usize = 2 * MIB + MIB + 4096;
/// What a JSON parser may keep: a body below the 8 MiB cap in a `Vec` that may have doubled.
const JSON_BOUND: usize = 16 * MIB + MIB + 4096;

fuzz_target!(|data: &[u8]| {
    let [mode, split, seed, body @ ..] = data else {
        return;
    };
    let api = [
        ModelApi::AnthropicMessages,
        ModelApi::OpenAiChat,
        ModelApi::OpenAiResponses,
        ModelApi::Gemini,
    ][usize::from(mode & 3)];
    let streaming = mode & 4 != 0;
    let body = body.repeat(1 << ((mode >> 3) & 15).min(9));
    let max_chunk = 1usize << (split % 17);

    let mut whole = UsageParser::new(api, streaming);
    whole.feed(&body);

    let base = LIVE.load(Relaxed);
    let mut parser = UsageParser::new(api, streaming);
    let bound = if streaming { SSE_BOUND } else { JSON_BOUND };
    let mut state = u32::from(*seed) | (u32::from(*split) << 8) | 0x1_0000;
    let mut rest = &body[..];
    while !rest.is_empty() {
        // xorshift32: deterministic chunk sizes from the seed bytes.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = 1 + (state as usize) % max_chunk;
        let (chunk, tail) = rest.split_at(n.min(rest.len()));
        parser.feed(chunk);
        rest = tail;
        let kept = LIVE.load(Relaxed).saturating_sub(base);
        assert!(
            kept <= bound,
            "{api:?} streaming={streaming}: parser keeps {kept} bytes after {} of {} (bound {bound})",
            body.len() - rest.len(),
            body.len()
        );
    }
    assert_eq!(
        parser.model(),
        whole.model(),
        "{api:?} streaming={streaming}: model depends on the split"
    );
    assert_eq!(
        parser.tokens(),
        whole.tokens(),
        "{api:?} streaming={streaming}: tokens depend on the split"
    );
});
