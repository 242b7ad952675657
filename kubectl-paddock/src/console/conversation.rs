//! The console's side of talking to a running agent (docs/conversing.md): a run's messages and
//! the box that sends one (`POST /runs/<ns>/<name>/say`, the code path of `kubectl paddock
//! say`), what a `Question` or `Plan` gate asks, and the controls that answer a question or
//! send a plan back. Pure markup, every value escaped by maud; below [`super::view`], which uses
//! it, and using nothing of it.

use crate::talk;
use crate::{age, clip_line};
use k8s_openapi::jiff::Timestamp;
use maud::{html, Markup};
use paddock_crds::{ApprovalGate, GateStage, RunMessage};

/// Longest plan shown on a gate card, in characters (the rest: `kubectl paddock gate --full`).
pub const MAX_PLAN_CHARS: usize = 8000;

/// What a `Question` (the question, its options numbered from 1, the answer) or a `Plan` (the
/// plan, the changes asked for) gate asks, below its summary; nothing for other stages.
pub fn request_details(g: &ApprovalGate) -> Markup {
    let r = &g.spec.request;
    let answer = g.status.as_ref().and_then(|s| s.answer.as_deref());
    html! {
        @match g.spec.stage {
            GateStage::Question => {
                @if let Some(q) = &r.question { p.question { "agent-reported question: " q { (q) } } }
                @if !r.options.is_empty() {
                    ol.options { @for o in &r.options { li { (o) } } }
                }
                @if let Some(a) = answer { p.answer { "answer: " b { (a) } } }
            }
            GateStage::Plan => {
                @if let Some(plan) = &r.plan {
                    details.plan open { summary { "agent-reported plan" } pre.plan { (clip_chars(plan)) } }
                }
                @if let Some(c) = answer { p.answer { "changes requested: " q { (c) } } }
            }
            _ => {}
        }
    }
}

fn clip_chars(s: &str) -> String {
    if s.chars().count() <= MAX_PLAN_CHARS {
        return s.to_string();
    }
    let cut: String = s.chars().take(MAX_PLAN_CHARS).collect();
    format!("{cut}\n… (kubectl paddock gate --full shows the rest)")
}

/// The inputs and buttons of a pending gate's decide form (`ns`, `name`: the gate's, for the
/// ids that keep typed text across live updates): a `Question` takes a typed answer, one of
/// its options, or Decline; a `Plan` takes Approve, Request changes (with the comment) or
/// Reject; others Approve or Reject.
pub fn decide_controls(ns: &str, name: &str, g: &ApprovalGate) -> Markup {
    let comment_id = format!("comment-{ns}-{name}");
    html! {
        @match g.spec.stage {
            GateStage::Question => {
                input.answer id={"answer-" (ns) "-" (name)} name="answer" placeholder="your answer" hx-preserve="true";
                button.approve type="submit" name="verdict" value="Approve" { "Answer" }
                @for (i, o) in g.spec.request.options.iter().enumerate() {
                    button.option type="submit" name="option" value=(i + 1) { (i + 1) ". " (clip_line(o, 60)) }
                }
                input id=(comment_id) name="comment" placeholder="comment (optional)" hx-preserve="true";
                button.reject type="submit" name="verdict" value="Reject" { "Decline" }
            }
            GateStage::Plan => {
                input id=(comment_id) name="comment" placeholder="comment (required to request changes)" hx-preserve="true";
                button.approve type="submit" name="verdict" value="Approve" { "Approve" }
                button.changes type="submit" name="verdict" value="RequestChanges" { "Request changes" }
                button.reject type="submit" name="verdict" value="Reject" { "Reject" }
            }
            _ => {
                input id=(comment_id) name="comment" placeholder="comment (optional)" hx-preserve="true";
                button.approve type="submit" name="verdict" value="Approve" { "Approve" }
                button.reject type="submit" name="verdict" value="Reject" { "Reject" }
            }
        }
    }
}

/// What the decide form posted: `verdict` (`Approve`, `Reject`, `RequestChanges`), a typed
/// `answer`, an `option` number; empty fields are absent.
pub fn choice(verdict: &str, answer: &str, option: &str) -> Result<talk::Choice, String> {
    let (answer, option) = (answer.trim(), option.trim());
    if !option.is_empty() {
        return option
            .parse()
            .map(talk::Choice::AnswerOption)
            .map_err(|_| format!("option {option:?} is not a number"));
    }
    match verdict {
        "Approve" if !answer.is_empty() => Ok(talk::Choice::Answer(answer.to_string())),
        "Approve" => Ok(talk::Choice::Approve),
        "Reject" => Ok(talk::Choice::Reject),
        "RequestChanges" => Ok(talk::Choice::RequestChanges),
        other => Err(format!("unknown verdict {other:?}")),
    }
}

/// The list of a run's messages (`#run-messages`, replaced by the live updates): sender, when,
/// delivery, text; or why it cannot be read.
pub fn messages_list(msgs: &Result<Vec<RunMessage>, String>, now: Timestamp) -> Markup {
    html! {
        div #run-messages {
            @match msgs {
                Err(why) => p.muted { (why) },
                Ok(m) if m.is_empty() => p.muted { "No messages yet." },
                Ok(m) => table.messages {
                    thead { tr { th { "From" } th { "Age" } th { "Delivery" } th { "Message" } } }
                    tbody {
                        @for x in m {
                            tr data-message=(x.metadata.name.as_deref().unwrap_or("")) {
                                td { (x.spec.sender) }
                                td { (age(x.metadata.creation_timestamp.as_ref(), now)) }
                                td.delivery { (talk::delivery(x)) }
                                td { pre.msg { (x.spec.text) } }
                            }
                        }
                    }
                },
            }
        }
    }
}

/// The run page's Messages section: the send box (not once the run ended), posting to
/// `<run href>/say`, and [`messages_list`].
pub fn messages_section(run_href: &str, msgs: &Result<Vec<RunMessage>, String>, ended: bool, now: Timestamp) -> Markup {
    html! {
        section #messages {
            h2 { "Messages" }
            @if !ended {
                form.say hx-post={(run_href) "/say"} hx-target="find .say-result" hx-swap="innerHTML" {
                    textarea #say-text name="text" rows="2" maxlength="4096" required
                        placeholder="a message to the agent (claude-code reads it with its next request)" {}
                    button type="submit" { "Send" }
                    div.say-result {}
                }
            }
            (messages_list(msgs, now))
        }
    }
}

#[cfg(test)]
mod tests;
