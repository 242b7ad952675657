//! Which requests a model route forwards: a per-provider allowlist of methods and exact paths.
//! A call that generates tokens is forwarded only where the meter reads its usage; the rest of a
//! vendor's API (batches, files, fine-tuning, vector stores, assistants, admin, …) bills the same
//! key in ways the gateway cannot meter or bound, so it is refused (403 in the vendor's error
//! shape, recorded as a `gateway_refused` line).
//!
//! Paths are the part after the route prefix (`/anthropic/v1/messages` → `/v1/messages`), as
//! the CLIs send them with the base URLs the operator gives them; the upstream's own base path
//! (`/v1` of `https://api.openai.com/v1`) goes in front when forwarding. The query string is not
//! part of the match and is forwarded as sent.
//!
//! | route | metered (budgeted) | free, forwarded unmetered |
//! |---|---|---|
//! | `anthropic` | `POST /v1/messages` | `POST /v1/messages/count_tokens`; `GET /v1/models`, `GET /v1/models/<id>`; `GET`/`HEAD /api/hello` (Claude Code's connectivity probe) |
//! | `openai`, `openrouter` | `POST /chat/completions`, `POST /responses` (each also under `/v1`) | `GET /models`, `GET /models/<id>` (also under `/v1`) |
//! | `gemini` | `POST /v1beta/models/<model>:generateContent`, `:streamGenerateContent` (also `/v1/…`) | `POST …:countTokens`; `GET /v1beta/models`, `GET /v1beta/models/<model>` |
//!
//! `GET` also allows `HEAD`. Ids and model names are one path segment of `A-Z a-z 0-9 . _ -`
//! (and `:` for OpenAI's fine-tuned ids), never `.` or `..`; a path with `%`, `//` or anything
//! else is refused, so no encoding or normalisation can turn an allowed path into another
//! endpoint at the vendor.

use hyper::Method;

use super::super::meter::ModelApi;

/// What an allowed request is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// A model call: metered with this API's parser and reserved against the budgets.
    Metered(ModelApi),
    /// A Gemini model call; the model is named in the path (`models/<model>:…`).
    MeteredGemini {
        /// The model.
        model: String,
    },
    /// Free (listing models, counting tokens, a connectivity probe): forwarded, not budgeted.
    Free,
}

impl Endpoint {
    /// The API whose usage the response carries, for a metered call.
    pub fn api(&self) -> Option<ModelApi> {
        match self {
            Endpoint::Metered(api) => Some(*api),
            Endpoint::MeteredGemini { .. } => Some(ModelApi::Gemini),
            Endpoint::Free => None,
        }
    }
}

/// One path segment naming a model or an id.
fn id_segment(s: &str, colon: bool) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') || (colon && b == b':'))
}

fn is_get(method: &Method) -> bool {
    method == Method::GET || method == Method::HEAD
}

/// The endpoint `method path` on `route`, or `None` when the route does not forward it.
pub fn classify(route: &str, method: &Method, path: &str) -> Option<Endpoint> {
    let post = method == Method::POST;
    match route {
        "anthropic" => match path {
            "/v1/messages" if post => Some(Endpoint::Metered(ModelApi::AnthropicMessages)),
            "/v1/messages/count_tokens" if post => Some(Endpoint::Free),
            "/v1/models" | "/api/hello" if is_get(method) => Some(Endpoint::Free),
            _ => path
                .strip_prefix("/v1/models/")
                .filter(|id| is_get(method) && id_segment(id, false))
                .map(|_| Endpoint::Free),
        },
        "openai" | "openrouter" => {
            let rest = path.strip_prefix("/v1").filter(|r| r.starts_with('/')).unwrap_or(path);
            match rest {
                "/chat/completions" if post => Some(Endpoint::Metered(ModelApi::OpenAiChat)),
                "/responses" if post => Some(Endpoint::Metered(ModelApi::OpenAiResponses)),
                "/models" if is_get(method) => Some(Endpoint::Free),
                _ => rest
                    .strip_prefix("/models/")
                    .filter(|id| is_get(method) && id_segment(id, true))
                    .map(|_| Endpoint::Free),
            }
        }
        "gemini" => {
            let rest = path.strip_prefix("/v1beta").or_else(|| path.strip_prefix("/v1"))?;
            if rest == "/models" {
                return is_get(method).then_some(Endpoint::Free);
            }
            let name = rest.strip_prefix("/models/")?;
            if is_get(method) {
                return id_segment(name, false).then_some(Endpoint::Free);
            }
            let (model, action) = name.rsplit_once(':')?;
            if !post || !id_segment(model, false) {
                return None;
            }
            match action {
                "generateContent" | "streamGenerateContent" => Some(Endpoint::MeteredGemini { model: model.into() }),
                "countTokens" => Some(Endpoint::Free),
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_metered_calls_and_harmless_reads_are_forwarded() {
        use ModelApi::*;
        let metered = |api| Some(Endpoint::Metered(api));
        let (get, post, delete) = (Method::GET, Method::POST, Method::DELETE);
        let table: Vec<(&str, &Method, &str, Option<Endpoint>)> = vec![
            ("anthropic", &post, "/v1/messages", metered(AnthropicMessages)),
            ("anthropic", &post, "/v1/messages/count_tokens", Some(Endpoint::Free)),
            ("anthropic", &get, "/v1/models", Some(Endpoint::Free)),
            ("anthropic", &Method::HEAD, "/api/hello", Some(Endpoint::Free)),
            (
                "anthropic",
                &get,
                "/v1/models/claude-sonnet-4-5-20250929",
                Some(Endpoint::Free),
            ),
            ("anthropic", &get, "/v1/messages", None),
            ("anthropic", &post, "/v1/messages/batches", None),
            ("anthropic", &post, "/v1/files", None),
            ("anthropic", &get, "/v1/models/..", None),
            ("anthropic", &get, "/v1/models/a%2F..%2Ffiles", None),
            ("anthropic", &post, "/v1/messages/", None),
            ("anthropic", &post, "//v1/messages", None),
            ("anthropic", &post, "/v1/../v1/messages", None),
            ("anthropic", &post, "/chat/completions", None),
            ("openai", &post, "/chat/completions", metered(OpenAiChat)),
            ("openai", &post, "/v1/chat/completions", metered(OpenAiChat)),
            ("openai", &post, "/responses", metered(OpenAiResponses)),
            ("openai", &get, "/models/ft:gpt-4o-mini:org::abc", Some(Endpoint::Free)),
            ("openai", &get, "/responses/resp_1", None),
            ("openai", &delete, "/responses/resp_1", None),
            ("openai", &post, "/batches", None),
            ("openai", &post, "/v1/batches", None),
            ("openai", &post, "/files", None),
            ("openai", &post, "/fine_tuning/jobs", None),
            ("openai", &post, "/embeddings", None),
            ("openai", &post, "/completions", None),
            ("openai", &post, "/images/generations", None),
            ("openai", &post, "/v1v1/chat/completions", None),
            ("openrouter", &post, "/chat/completions", metered(OpenAiChat)),
            ("openrouter", &get, "/models", Some(Endpoint::Free)),
            (
                "gemini",
                &post,
                "/v1beta/models/gemini-2.5-pro:streamGenerateContent",
                Some(Endpoint::MeteredGemini {
                    model: "gemini-2.5-pro".into(),
                }),
            ),
            (
                "gemini",
                &post,
                "/v1/models/gemini-2.0-flash:generateContent",
                Some(Endpoint::MeteredGemini {
                    model: "gemini-2.0-flash".into(),
                }),
            ),
            (
                "gemini",
                &post,
                "/v1beta/models/gemini-2.5-pro:countTokens",
                Some(Endpoint::Free),
            ),
            ("gemini", &get, "/v1beta/models", Some(Endpoint::Free)),
            ("gemini", &get, "/v1beta/models/gemini-2.5-pro", Some(Endpoint::Free)),
            (
                "gemini",
                &post,
                "/v1beta/models/gemini-2.5-pro:batchGenerateContent",
                None,
            ),
            (
                "gemini",
                &post,
                "/v1beta/models/gemini-embedding-001:embedContent",
                None,
            ),
            ("gemini", &post, "/v1beta/tunedModels/x:generateContent", None),
            ("gemini", &post, "/v1beta/models/a/b:generateContent", None),
            ("gemini", &post, "/v1beta/cachedContents", None),
            ("gemini", &post, "/upload/v1beta/files", None),
            ("gemini", &post, "/v1beta/models/:generateContent", None),
            ("elsewhere", &post, "/v1/messages", None),
        ];
        for (route, method, path, want) in table {
            assert_eq!(classify(route, method, path), want, "{route} {method} {path}");
        }
    }
}
