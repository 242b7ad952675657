use super::manifest::{build_followup, build_new_run, FormError, NewRunForm};
use super::security::{check, cookie_name, Secrets, Verdict, CSP, CSRF_HEADER};
use super::view::{self, RunFilter};
use super::*;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, Uri};
use paddock_crds::events::{EventLine, RunnerEvent};
use serde_json::json;
use tower::ServiceExt;

/// What a hostile agent prints: markup that would run script if it were not escaped.
const HOSTILE: &str = r#"<script>alert(1)</script>"><img src=x onerror=alert(2)>'&"#;

fn secrets() -> Secrets {
    Secrets {
        token: "t0k".repeat(10),
        csrf: "c5rf".repeat(8),
    }
}

fn run(name: &str, ns: &str, created: &str, phase: &str) -> AgentRun {
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "AgentRun",
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": created},
        "spec": {"repo": {"url": "https://git.example.com/r.git"}, "agent": {"name": "shell"}, "prompt": format!("prompt of {name}")},
        "status": {"phase": phase, "usage": {"inputTokens": 10, "outputTokens": 5, "turns": 1, "costUsd": 0.0123}},
    }))
    .expect("a valid AgentRun")
}

fn gate(name: &str, users: &[&str], input: &str) -> ApprovalGate {
    serde_json::from_value(json!({
        "apiVersion": "paddock.dev/v1alpha1", "kind": "ApprovalGate",
        "metadata": {"name": name, "namespace": "ns", "creationTimestamp": "2026-12-01T00:00:00Z"},
        "spec": {"runRef": {"name": "r"}, "stage": "ToolUse", "quorum": 1,
                 "request": {"summary": HOSTILE, "tool": HOSTILE, "input": input},
                 "approvers": {"users": users},
                 "decisions": [{"approver": HOSTILE, "decision": "Reject", "comment": HOSTILE}]},
        "status": {"state": "Pending"},
    }))
    .expect("a valid ApprovalGate")
}

fn now() -> Timestamp {
    "2026-12-02T00:00:00Z".parse().expect("a timestamp")
}

/// No markup of the hostile string survives: no tag opens, and the text is there escaped.
fn assert_escaped(html: &str) {
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(!html.contains("<img src=x"), "{html}");
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(2)&gt;"),
        "{html}"
    );
}

#[test]
fn agent_output_is_escaped_everywhere_it_is_shown() {
    let ev = |event| EventLine {
        v: 1,
        seq: 1,
        ts: "2026-12-01T00:00:00.000Z".into(),
        event,
    };
    for e in [
        RunnerEvent::Message { text: HOSTILE.into() },
        RunnerEvent::ToolCall {
            id: HOSTILE.into(),
            name: HOSTILE.into(),
            input: HOSTILE.into(),
        },
        RunnerEvent::ToolResult {
            id: "1".into(),
            is_error: false,
            output: HOSTILE.into(),
        },
        RunnerEvent::Error {
            message: HOSTILE.into(),
        },
        RunnerEvent::Final {
            text: HOSTILE.into(),
            is_error: false,
        },
    ] {
        assert_escaped(&view::timeline_item(&ev(e), None).into_string());
    }
    assert_escaped(&view::gates_panel("ns", &[Arc::new(gate("g", &[], HOSTILE))], now()).into_string());
    assert_escaped(&view::inbox_card(&gate("g", &[], HOSTILE), Some(&Ok(HOSTILE.into())), now()).into_string());
    let diff = format!("diff --git a/{HOSTILE} b/{HOSTILE}\n+{HOSTILE}\n");
    let html = view::diff_section(&Ok(diff)).into_string();
    assert!(
        !html.contains("<img src=x") && !html.contains("<script>alert"),
        "{html}"
    );
    let mut r = run(HOSTILE, "ns", "2026-12-01T00:00:00Z", "Running");
    r.spec.repo.url = HOSTILE.into();
    r.spec.prompt = Some(HOSTILE.into());
    let table = view::runs_table(
        &view::Chrome {
            user: HOSTILE,
            namespace: None,
            csrf: "x",
            tab: "runs",
        },
        &[Arc::new(r.clone())],
        1,
        &RunFilter::default(),
        now(),
    );
    assert_escaped(&table.into_string());
    let chrome = view::Chrome {
        user: "u",
        namespace: None,
        csrf: "x",
        tab: "",
    };
    let page = view::run_page(
        &chrome,
        &r,
        &[],
        &Err(HOSTILE.into()),
        &Err(HOSTILE.into()),
        &Err(HOSTILE.into()),
        now(),
    )
    .into_string();
    assert_escaped(&page);
    assert_eq!(page.matches("<script").count(), 4, "only the four asset scripts");
    let t = crate::parse_transcript(&format!(
        "{{\"seq\":1,\"model\":{}}}\n{HOSTILE}\n",
        serde_json::to_string(HOSTILE).unwrap_or_default()
    ));
    assert_escaped(&view::transcript_table(&t).into_string());
}

#[test]
fn a_carriage_return_cannot_break_an_sse_event() {
    // axum refuses (panics on) data with '\r'; agent text may hold one.
    let html = view::timeline_item(
        &EventLine {
            v: 1,
            seq: 1,
            ts: "x".into(),
            event: RunnerEvent::Message { text: "a\r\nb".into() },
        },
        None,
    );
    let _ = live::html_event("update", &html.into_string());
}

#[test]
fn long_tool_output_is_cut() {
    let long = "x".repeat(view::MAX_EVENT_CHARS + 10);
    let html = view::timeline_item(
        &EventLine {
            v: 1,
            seq: 1,
            ts: "x".into(),
            event: RunnerEvent::Message { text: long },
        },
        None,
    )
    .into_string();
    assert!(html.contains("… (10 more characters)"), "{html}");
}

fn req(method: Method, uri: &str, headers: &[(&str, &str)]) -> (Method, Uri, HeaderMap) {
    let mut h = HeaderMap::new();
    for (k, v) in headers {
        h.append(
            axum::http::HeaderName::from_bytes(k.as_bytes()).expect("a header name"),
            v.parse().expect("a header value"),
        );
    }
    (method, uri.parse().expect("a URI"), h)
}

#[test]
fn requests_need_the_host_the_token_and_for_writes_the_csrf_token() {
    let s = secrets();
    let cookie = format!("{}={}", cookie_name(8080), s.token);
    type Case<'a> = ((Method, &'a str, Vec<(&'a str, &'a str)>), Verdict);
    let table: Vec<Case> = vec![
        (
            (Method::GET, "/", vec![("host", "127.0.0.1:8080")]),
            Verdict::Refuse(
                StatusCode::UNAUTHORIZED,
                "no console token: open the URL `kubectl paddock console` printed",
            ),
        ),
        (
            (
                Method::GET,
                "/",
                vec![("host", "evil.example:8080"), ("cookie", &cookie)],
            ),
            Verdict::Refuse(StatusCode::MISDIRECTED_REQUEST, "unexpected Host header"),
        ),
        (
            (Method::GET, "/", vec![("host", "127.0.0.1:8081"), ("cookie", &cookie)]),
            Verdict::Refuse(StatusCode::MISDIRECTED_REQUEST, "unexpected Host header"),
        ),
        (
            (Method::GET, "/", vec![("host", "127.0.0.1:8080"), ("cookie", &cookie)]),
            Verdict::Pass,
        ),
        (
            (
                Method::GET,
                "/",
                vec![
                    ("host", "localhost:8080"),
                    ("cookie", "a=b; paddock_console_8080=wrong"),
                ],
            ),
            Verdict::Refuse(
                StatusCode::UNAUTHORIZED,
                "no console token: open the URL `kubectl paddock console` printed",
            ),
        ),
        (
            (
                Method::POST,
                "/new",
                vec![("host", "127.0.0.1:8080"), ("cookie", &cookie)],
            ),
            Verdict::Refuse(StatusCode::FORBIDDEN, "missing or wrong CSRF token"),
        ),
        (
            (
                Method::POST,
                "/new",
                vec![
                    ("host", "127.0.0.1:8080"),
                    ("cookie", &cookie),
                    (CSRF_HEADER, &s.csrf),
                    ("origin", "http://evil.example"),
                ],
            ),
            Verdict::Refuse(StatusCode::FORBIDDEN, "cross-origin write refused"),
        ),
        (
            (
                Method::POST,
                "/new",
                vec![
                    ("host", "127.0.0.1:8080"),
                    ("cookie", &cookie),
                    (CSRF_HEADER, &s.csrf),
                    ("sec-fetch-site", "cross-site"),
                ],
            ),
            Verdict::Refuse(StatusCode::FORBIDDEN, "cross-site write refused"),
        ),
        (
            (
                Method::POST,
                "/new",
                vec![
                    ("host", "127.0.0.1:8080"),
                    ("cookie", &cookie),
                    (CSRF_HEADER, &s.csrf),
                    ("origin", "http://127.0.0.1:8080"),
                    ("sec-fetch-site", "same-origin"),
                ],
            ),
            Verdict::Pass,
        ),
        (
            (
                Method::POST,
                "/new",
                vec![("host", "127.0.0.1:8080"), ("cookie", &cookie), (CSRF_HEADER, &s.token)],
            ),
            Verdict::Refuse(StatusCode::FORBIDDEN, "missing or wrong CSRF token"),
        ),
    ];
    for ((m, uri, h), want) in table {
        let (m, u, h) = req(m, uri, &h);
        assert_eq!(check(&s, 8080, &m, &u, &h), want, "{m} {uri} {h:?}");
    }
    let (m, u, h) = req(
        Method::GET,
        &format!("/runs/a/b?x=1&token={}", s.token),
        &[("host", "127.0.0.1:8080")],
    );
    assert_eq!(
        check(&s, 8080, &m, &u, &h),
        Verdict::SetCookie {
            location: "/runs/a/b?x=1".into()
        }
    );
    let (m, u, h) = req(Method::GET, "/?token=guess", &[("host", "127.0.0.1:8080")]);
    assert!(matches!(
        check(&s, 8080, &m, &u, &h),
        Verdict::Refuse(StatusCode::UNAUTHORIZED, _)
    ));
}

#[test]
fn tokens_are_random_and_long() {
    let (a, b) = (Secrets::generate().expect("rng"), Secrets::generate().expect("rng"));
    assert_eq!(a.token.len(), 64);
    assert_ne!(a.token, b.token);
    assert_ne!(a.token, a.csrf);
    assert_eq!(format!("{a:?}"), "Secrets { .. }", "never printed");
}

#[test]
fn the_new_run_form_builds_a_valid_manifest() {
    let f = NewRunForm {
        namespace: "team-a".into(),
        name: "fix".into(),
        repo: "https://git.example.com/a.git".into(),
        revision: "main".into(),
        agent: "codex".into(),
        prompt: "Fix it.".into(),
        pool: "fast".into(),
        timeout: "30m".into(),
        max_cost_usd: "2.5".into(),
        before_push: "true".into(),
        approvers: "alice@example.com, bob@example.com".into(),
        ..Default::default()
    };
    let m = build_new_run(&f).expect("valid");
    assert_eq!(
        m["spec"],
        json!({"repo": {"url": "https://git.example.com/a.git", "revision": "main"}, "agent": {"name": "codex"},
               "prompt": "Fix it.", "runnerPoolRef": {"name": "fast"}, "budget": {"timeout": "30m", "maxCostUSD": 2.5},
               "approvals": {"beforePush": {"approvers": {"users": ["alice@example.com", "bob@example.com"]}}},
               "output": {"push": true}})
    );
    assert_eq!(m["metadata"], json!({"name": "fix", "namespace": "team-a"}));
    assert_eq!(
        build_new_run(&NewRunForm {
            prompt: String::new(),
            ..f.clone()
        }),
        Err(FormError::Missing("prompt"))
    );
    assert!(matches!(
        build_new_run(&NewRunForm {
            max_cost_usd: "lots".into(),
            ..f.clone()
        }),
        Err(FormError::Invalid { .. })
    ));
    assert!(matches!(
        build_new_run(&NewRunForm {
            agent: "<script>".into(),
            ..f
        }),
        Err(FormError::Invalid { .. })
    ));
}

#[test]
fn a_follow_up_resumes_the_run_with_its_settings() {
    let mut r = run("fix", "ns", "2026-12-01T00:00:00Z", "Succeeded");
    r.spec.runner_pool_ref = Some(paddock_crds::LocalObjectRef { name: "fast".into() });
    let m = build_followup(&r, "fix-2", "Now add a changelog entry.").expect("valid");
    assert_eq!(m["spec"]["resumeFrom"], json!({"name": "fix"}));
    assert_eq!(m["spec"]["prompt"], "Now add a changelog entry.");
    assert_eq!(m["spec"]["runnerPoolRef"], json!({"name": "fast"}));
    assert_eq!(m["metadata"], json!({"name": "fix-2", "namespace": "ns"}));
    assert_eq!(build_followup(&r, " ", "x"), Err(FormError::Missing("name")));
}

#[test]
fn runs_are_filtered_newest_first_and_paged() {
    let runs: Vec<Arc<AgentRun>> = (0..120)
        .map(|i| {
            Arc::new(run(
                &format!("r{i:03}"),
                if i % 2 == 0 { "a" } else { "b" },
                &format!("2026-12-01T00:{:02}:{:02}Z", i / 60, i % 60),
                if i % 3 == 0 { "Failed" } else { "Succeeded" },
            ))
        })
        .collect();
    let (page, total) = view::select_runs(&runs, &RunFilter::default());
    assert_eq!(total, 120);
    assert_eq!(page.len(), view::PAGE_SIZE);
    assert_eq!(page[0].metadata.name.as_deref(), Some("r119"));
    let f = RunFilter {
        ns: "a".into(),
        phase: "Failed".into(),
        page: 2,
        ..Default::default()
    };
    let (page, total) = view::select_runs(&runs, &f);
    assert_eq!(total, 20, "even and divisible by 3");
    assert!(page.is_empty(), "one page only");
    let (page, total) = view::select_runs(
        &runs,
        &RunFilter {
            q: "PROMPT OF R00".into(),
            ..Default::default()
        },
    );
    assert_eq!((page.len(), total), (10, 10));
    assert_eq!(f.query(2), "ns=a&phase=Failed&page=2");
}

/// An app whose client points nowhere: the pages used here read only the stores.
fn offline(runs: Vec<AgentRun>) -> Arc<App> {
    let config = kube::Config::new("http://127.0.0.1:9".parse().expect("a URL"));
    let client = Client::try_from(config).expect("a client");
    App::offline(client, None, secrets(), runs, vec![], vec![])
}

fn get(uri: &str, cookie: bool) -> Request<Body> {
    let mut b = Request::builder().uri(uri).header("host", "127.0.0.1:0");
    if cookie {
        b = b.header("cookie", format!("{}={}", cookie_name(0), secrets().token));
    }
    b.body(Body::empty()).expect("a request")
}

#[tokio::test]
async fn the_router_guards_every_route_and_sets_the_policy() {
    let app = router(offline(vec![run("a", "ns", "2026-12-01T00:00:00Z", "Running")]));
    let r = app.clone().oneshot(get("/", false)).await.expect("an answer");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], CSP);
    let r = app
        .clone()
        .oneshot(get("/assets/htmx.min.js", false))
        .await
        .expect("an answer");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "assets too");
    let r = app
        .clone()
        .oneshot(get(&format!("/?token={}", secrets().token), false))
        .await
        .expect("an answer");
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(r.headers()[header::SET_COOKIE]
        .to_str()
        .is_ok_and(|c| c.contains("HttpOnly; SameSite=Strict")));
    let r = app.clone().oneshot(get("/", true)).await.expect("an answer");
    assert_eq!(r.status(), StatusCode::OK);
    assert!(is_html(&r));
    assert!(r.headers().contains_key("server-timing"));
    let r = app
        .clone()
        .oneshot(get("/assets/htmx.min.js", true))
        .await
        .expect("an answer");
    assert_eq!(r.status(), StatusCode::OK);
    let post = Request::builder()
        .method(Method::POST)
        .uri("/new/preview")
        .header("host", "127.0.0.1:0")
        .header("cookie", format!("{}={}", cookie_name(0), secrets().token))
        .body(Body::empty())
        .expect("a request");
    let r = app.clone().oneshot(post).await.expect("an answer");
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no CSRF token");
    // Sending a message is a write like the others.
    let say = Request::builder()
        .method(Method::POST)
        .uri("/runs/ns/a/say")
        .header("host", "127.0.0.1:0")
        .header("cookie", format!("{}={}", cookie_name(0), secrets().token))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("text=hi"))
        .expect("a request");
    let r = app.clone().oneshot(say).await.expect("an answer");
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no CSRF token");
}

/// The benchmark of acceptance item 5: the runs page's first page, server time (the handler:
/// filter, sort, render), with 1,000 and 10,000 runs in the store. Prints the numbers
/// (`cargo test -p kubectl-paddock runs_page_benchmark -- --nocapture`); asserts nothing
/// about time.
#[tokio::test]
async fn runs_page_benchmark() {
    for n in [1_000usize, 10_000] {
        let runs: Vec<AgentRun> = (0..n)
            .map(|i| {
                run(
                    &format!("run-{i:05}"),
                    &format!("team-{}", i % 10),
                    &format!(
                        "2026-11-{:02}T{:02}:{:02}:{:02}Z",
                        1 + i / 3600 % 28,
                        i / 60 % 24,
                        i % 60,
                        i % 60
                    ),
                    ["Running", "Succeeded", "Failed", "Queued"][i % 4],
                )
            })
            .collect();
        let app = router(offline(runs));
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..20 {
            let t0 = std::time::Instant::now();
            let r = app.clone().oneshot(get("/", true)).await.expect("an answer");
            let body = axum::body::to_bytes(r.into_body(), usize::MAX).await.expect("a body");
            times.push(t0.elapsed().as_secs_f64() * 1000.0);
            bytes = body.len();
        }
        times.sort_by(f64::total_cmp);
        println!(
            "console runs page, {n} runs in the store: first page ({} rows, {bytes} bytes) p50 {:.2} ms, max {:.2} ms server time over {} requests",
            view::PAGE_SIZE,
            times[times.len() / 2],
            times[times.len() - 1],
            times.len()
        );
    }
}
