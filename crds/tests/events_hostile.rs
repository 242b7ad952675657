//! Malformed runner output (issue 9): what `parse_line`, `redact` and `truncate` do with lines a
//! broken or hostile agent container can print. None of them panics; what they return is
//! bounded; only well-formed lines of this schema version become events.

use paddock_crds::events::{parse_line, redact, truncate, RunnerEvent, MAX_TEXT_BYTES, REDACTED, SCHEMA_VERSION};

const OK: &str = r#"{"v":1,"seq":1,"ts":"t","type":"message","text":"hi"}"#;

#[test]
fn the_reference_line_parses() {
    // Guards every `None` below: the same shapes, well-formed, do parse.
    assert!(parse_line(OK).is_some());
    assert_eq!(SCHEMA_VERSION, 1);
}

#[test]
fn huge_lines_do_not_panic() {
    // 10 MiB of garbage, and a 10 MiB well-formed message: the latter parses (readers truncate).
    let garbage = "{".to_string() + &"x".repeat(10 << 20);
    assert_eq!(parse_line(&garbage), None);
    let big = format!(
        r#"{{"v":1,"seq":1,"ts":"t","type":"message","text":"{}"}}"#,
        "a".repeat(10 << 20)
    );
    match parse_line(&big).map(|l| l.event) {
        Some(RunnerEvent::Message { text }) => {
            assert_eq!(text.len(), 10 << 20);
            let cut = truncate(&text, MAX_TEXT_BYTES);
            assert!(cut.len() <= MAX_TEXT_BYTES && cut.ends_with("…[truncated]"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn invalid_utf8_made_lossy_is_handled() {
    let bytes = b"{\"v\":1,\"seq\":1,\"ts\":\"t\",\"type\":\"message\",\"text\":\"a\xff\xfe\xc3b\"}";
    let lossy = String::from_utf8_lossy(bytes);
    match parse_line(&lossy).map(|l| l.event) {
        Some(RunnerEvent::Message { text }) => assert_eq!(text, "a\u{fffd}\u{fffd}\u{fffd}b"),
        other => panic!("{other:?}"),
    }
    assert_eq!(parse_line(&String::from_utf8_lossy(b"\xff\xfe{\"v\":1}")), None);
    // Truncating at a replacement character (3 bytes) stays on a char boundary.
    let s = "\u{fffd}".repeat(5000);
    for max in [0, 1, 13, 14, 15, 16, 100, 4096] {
        let t = truncate(&s, max);
        assert!(t.is_char_boundary(t.len()));
        assert!(t.ends_with("…[truncated]"), "{max}");
    }
}

#[test]
fn deeply_nested_json_is_refused_without_overflow() {
    let arrays = "[".repeat(10_000);
    assert_eq!(parse_line(&arrays), None);
    // Nesting inside an otherwise valid object: an unknown field (kept by `flatten`) and a
    // field of the wrong type.
    for nested in [
        format!(
            r#"{{"v":1,"seq":1,"ts":"t","type":"message","text":"x","junk":{}{}}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        ),
        format!(
            r#"{{"v":1,"seq":1,"ts":"t","type":"message","text":{}}}"#,
            "[".repeat(10_000)
        ),
        format!(
            r#"{{"v":1,"seq":1,"ts":"t","type":"message","text":"x","junk":{}"#,
            r#"{"a":"#.repeat(10_000)
        ),
    ] {
        assert_eq!(parse_line(&nested), None);
    }
}

#[test]
fn right_shape_wrong_version_or_type_is_skipped() {
    for line in [
        r#"{"v":2,"seq":1,"ts":"t","type":"message","text":"hi"}"#,
        r#"{"v":0,"seq":1,"ts":"t","type":"message","text":"hi"}"#,
        r#"{"v":-1,"seq":1,"ts":"t","type":"message","text":"hi"}"#,
        r#"{"v":"1","seq":1,"ts":"t","type":"message","text":"hi"}"#,
        r#"{"v":4294967297,"seq":1,"ts":"t","type":"message","text":"hi"}"#,
        r#"{"v":1,"seq":-1,"ts":"t","type":"message","text":"hi"}"#,
        r#"{"v":1,"seq":1,"ts":"t","type":"nope","text":"hi"}"#,
        r#"{"v":1,"seq":1,"ts":"t","type":"message"}"#,
        r#"{"v":1,"seq":1,"ts":"t","type":"message","text":1}"#,
        r#"{"v":1,"seq":1,"type":"message","text":"hi"}"#,
        r#"{"v":1,"seq":1,"ts":"t","type":"result","outcome":"Maybe","reason":"x"}"#,
        r#"{"v":1,"seq":1,"ts":"t","type":"step","step":"rm -rf","status":"started"}"#,
        "{\"v\":1,\"seq\":1,\"ts\":\"t\",\"type\":\"message\",\"text\":\"hi\"",
        "{}",
        "null",
        "",
        "   ",
    ] {
        assert_eq!(parse_line(line), None, "{line}");
    }
    // Surrounding whitespace is tolerated; trailing garbage is not.
    assert!(parse_line(&format!("  {OK}\r\n")).is_some());
    assert_eq!(parse_line(&format!("{OK} {OK}")), None);
}

#[test]
fn an_endless_stream_stays_bounded() {
    // 1e6 lines, alternating noise, valid events and near-misses; parse_line keeps no state,
    // so memory is bounded by one line; count what comes out.
    let mut some = 0u64;
    let mut none = 0u64;
    let mut last_seq = 0;
    for i in 0..1_000_000u64 {
        let line = match i % 4 {
            0 => format!(r#"{{"v":1,"seq":{i},"ts":"t","type":"log","stream":"stdout","text":"l{i}"}}"#),
            1 => format!("npm WARN {i}"),
            2 => format!(r#"{{"v":2,"seq":{i},"ts":"t","type":"log","stream":"stdout","text":"l"}}"#),
            _ => format!(r#"{{"v":1,"seq":{i},"#),
        };
        match parse_line(&line) {
            Some(ev) => {
                some += 1;
                last_seq = ev.seq;
            }
            None => none += 1,
        }
    }
    assert_eq!((some, none), (250_000, 750_000));
    assert_eq!(last_seq, 999_996);
}

#[test]
fn forged_result_with_huge_strings_is_bounded_by_readers() {
    let huge = "A".repeat(4 << 20);
    let line = format!(
        r#"{{"v":1,"seq":99,"ts":"t","type":"result","outcome":"Succeeded","reason":"{huge}","message":"{huge}","branch":"{huge}","summary":"{huge}","commit":"{huge}","filesChanged":4294967295,"insertions":4294967295,"deletions":4294967295,"patchBytes":18446744073709551615}}"#
    );
    let Some(ev) = parse_line(&line) else {
        panic!("a forged result of the right shape parses; readers must bound it")
    };
    let RunnerEvent::Result(r) = ev.event else {
        panic!("not a result")
    };
    assert_eq!(r.files_changed, u32::MAX);
    assert_eq!(r.patch_bytes, u64::MAX);
    for s in [
        &r.reason,
        &r.message,
        &r.branch,
        r.summary.as_ref().unwrap(),
        r.commit.as_ref().unwrap(),
    ] {
        let cut = truncate(s, MAX_TEXT_BYTES);
        assert!(cut.len() <= MAX_TEXT_BYTES, "{}", cut.len());
    }
    // Counts that overflow their type are refused, not wrapped.
    let overflow = line.replace("4294967295", "4294967296");
    assert_eq!(parse_line(&overflow), None);
}

#[test]
fn redact_handles_hostile_text() {
    let secret = "sk-live-0123456789".to_string();
    let secrets = vec![secret.clone()];
    // Many occurrences in a huge text, adjacent and overlapping copies.
    let text = format!("{secret}{secret}x{}", secret.repeat(100_000));
    let out = redact(&text, &secrets);
    assert!(!out.contains(&secret));
    assert_eq!(out.matches(REDACTED).count(), 100_002);
    // Invalid UTF-8 around the secret, made lossy.
    let lossy = String::from_utf8_lossy(b"\xffsk-live-0123456789\xfe").into_owned();
    assert_eq!(redact(&lossy, &secrets), "\u{fffd}[REDACTED]\u{fffd}");
    // A secret equal to the marker, or containing it, cannot loop forever.
    let odd = vec![REDACTED.to_string(), format!("x{REDACTED}x")];
    assert_eq!(redact("a [REDACTED] b", &odd), "a [REDACTED] b");
    // Redact before truncate: a cut never leaves a partial secret.
    let t = truncate(
        &redact(&format!("{}{secret}", "a".repeat(4070)), &secrets),
        MAX_TEXT_BYTES,
    );
    assert!(!t.contains("sk-live"), "{t}");
}

#[test]
fn truncate_is_bounded_for_every_limit() {
    const MARK: &str = "…[truncated]";
    let s = "é€😀a".repeat(10_000);
    // Below the marker's own 14 bytes the result is the marker alone (no caller uses such a
    // limit; the runner's termination message halves its budget down to 0 and stops there).
    for max in [0usize, 1, 13] {
        assert_eq!(truncate(&s, max), MARK);
    }
    for max in [15usize, 16, 17, 100, 4095, 4096, 4097] {
        let t = truncate(&s, max);
        assert!(t.len() <= max, "max {max}: {} bytes", t.len());
        assert!(t.ends_with("…[truncated]"));
    }
}
