//! `egpu serve`: one model behind an OpenAI-compatible HTTP API (axum on tokio) and a chat page.
//!
//! The model lives on one worker thread that takes requests from a bounded queue in arrival
//! order, so concurrent clients never share a KV cache mid-answer. Each request gets its own
//! channel for the answer; when the client goes away (a dropped stream) the channel closes and
//! the worker stops that answer and moves on.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use egpu_llm::chat::ChatMessage;
use egpu_llm::engine::{Event, FinishReason, GenerateOptions};
use egpu_llm::sampler::SamplerConfig;
use egpu_llm::Engine;
use futures_util::stream::{self, Stream, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::args::{resolve_seed, ServeArgs};
use crate::error::CliError;

/// The chat page, embedded in the binary.
const CHAT_PAGE: &str = include_str!("../static/chat.html");

struct AppState {
    model: String,
    api_key: Option<String>,
    max_tokens: usize,
    max_body: usize,
    jobs: SyncSender<Job>,
    next_id: AtomicU64,
    /// Answers stopped because their client went away (reported by /health).
    cancelled: Arc<AtomicU64>,
    /// Sampling for fields a request leaves out, and the seed flag (-1: from the clock).
    defaults: SamplerConfig,
    seed: i128,
}

enum Prompt {
    Chat(Vec<ChatMessage>),
    Text(String),
}

struct Job {
    prompt: Prompt,
    options: GenerateOptions,
    answer: mpsc::UnboundedSender<Msg>,
}

enum Msg {
    Text(String),
    Done {
        finish: FinishReason,
        prompt_tokens: usize,
        completion_tokens: usize,
        prompt_tps: f64,
        decode_tps: f64,
    },
    Failed(ApiError),
}

/// An error in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Debug, Clone)]
struct ApiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    param: Option<&'static str>,
    code: Option<&'static str>,
}

impl ApiError {
    fn bad_request(message: impl Into<String>, param: Option<&'static str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code: None,
        }
    }

    fn body(&self) -> Value {
        json!({"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

pub fn run(args: &ServeArgs) -> Result<(), CliError> {
    args.model.check_once().map_err(CliError::Usage)?;
    args.model.note_ignored();
    let api_key = args
        .api_key
        .clone()
        .or_else(|| std::env::var("EGPU_API_KEY").ok())
        .filter(|k| !k.is_empty());
    let ip: IpAddr = match args.host.as_str() {
        "localhost" => IpAddr::from([127, 0, 0, 1]),
        host => host.parse().map_err(|_| {
            CliError::Usage(format!(
                "--host {host} is not an IP address; use 127.0.0.1 (the default), ::1 or 0.0.0.0"
            ))
        })?,
    };
    if !ip.is_loopback() && api_key.is_none() {
        return Err(CliError::Usage(format!(
            "--host {ip} would let other machines use the model without a key; set --api-key or EGPU_API_KEY, or keep the default 127.0.0.1"
        )));
    }
    let engine = crate::chat::load(&args.model)?;
    let ctx = args.model.context(engine.info.context_length).map_err(CliError::Usage)?;
    let conv = engine.conversation(ctx)?;
    let model = args.alias.clone().unwrap_or_else(|| {
        args.model
            .path()
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into())
    });
    eprintln!(
        "{}: {} {} parameters, {} | context {ctx} of {} | loaded in {:.0} ms",
        engine.info.name,
        engine.info.arch,
        engine.info.params_human(),
        engine.info.quant,
        engine.info.context_length,
        engine.load_secs * 1e3
    );
    let (jobs, queue) = sync_channel::<Job>(args.queue);
    let batch = args.model.batch;
    let template = args.model.chat_template.clone();
    let cancelled = Arc::new(AtomicU64::new(0));
    let counter = cancelled.clone();
    std::thread::Builder::new()
        .name("egpu-model".into())
        .spawn(move || worker(&engine, conv, queue, batch, template.as_deref(), &counter))
        .map_err(|e| CliError::Usage(format!("starting the model thread: {e}")))?;

    let state = Arc::new(AppState {
        model,
        api_key,
        max_tokens: args.max_tokens_limit,
        max_body: args.max_body_bytes,
        jobs,
        next_id: AtomicU64::new(1),
        cancelled,
        defaults: args.sampling.config(),
        seed: args.sampling.seed,
    });
    let app = Router::new()
        .route("/", get(|| async { Html(CHAT_PAGE) }))
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .fallback(|| async {
            ApiError {
                status: StatusCode::NOT_FOUND,
                message: "no such endpoint".into(),
                kind: "invalid_request_error",
                param: None,
                code: Some("not_found"),
            }
        })
        .with_state(state.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Usage(format!("starting the async runtime: {e}")))?;
    runtime.block_on(async move {
        let addr = SocketAddr::new(ip, args.port);
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            CliError::Usage(format!(
                "listening on {addr}: {e}; is another server on that port? try --port"
            ))
        })?;
        let bound = listener
            .local_addr()
            .map_err(|e| CliError::Usage(format!("reading the bound address: {e}")))?;
        let url = match bound.ip() {
            IpAddr::V6(ip) => format!("http://[{ip}]:{}/", bound.port()),
            IpAddr::V4(ip) => format!("http://{ip}:{}/", bound.port()),
        };
        println!(
            "listening on {url} (model \"{}\"; chat page at {url}, API at {url}v1)",
            state.model
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
        axum::serve(listener, app).await.map_err(|e| CliError::Usage(format!("serving HTTP: {e}")))
    })
}

/// The model thread: answers jobs one after another in one KV cache, reusing the prefix a new
/// prompt shares with the previous one (a chat's next turn).
fn worker(
    engine: &Engine,
    mut conv: egpu_llm::engine::Conversation,
    queue: std::sync::mpsc::Receiver<Job>,
    batch: usize,
    template: Option<&str>,
    cancelled: &AtomicU64,
) {
    for job in queue {
        if job.answer.is_closed() {
            cancelled.fetch_add(1, Ordering::Relaxed); // the client left while waiting
            continue;
        }
        let ids = match &job.prompt {
            Prompt::Chat(messages) => {
                engine.chat_prompt(messages, template).and_then(|t| engine.tokenize(&t, true))
            }
            Prompt::Text(text) => engine.tokenize(text, false),
        };
        let ids = match ids {
            Ok(ids) => ids,
            Err(e) => {
                let _ = job.answer.send(Msg::Failed(ApiError::bad_request(e.to_string(), None)));
                continue;
            }
        };
        if ids.len() >= conv.capacity() {
            let mut e = ApiError::bad_request(
                format!(
                    "the prompt is {} tokens long but the server's context holds {}; shorten it (or start egpu serve with a larger -c)",
                    ids.len(),
                    conv.capacity()
                ),
                Some("messages"),
            );
            e.code = Some("context_length_exceeded");
            let _ = job.answer.send(Msg::Failed(e));
            continue;
        }
        let mut options = job.options;
        options.batch = batch;
        // Room left in the context bounds the answer.
        let answer = &job.answer;
        let result = engine.generate(&mut conv, &ids, &options, &mut |event| {
            let gone = match event {
                Event::Text(text) => answer.send(Msg::Text(text.to_owned())).is_err(),
                Event::Prompt { .. } => answer.is_closed(),
            };
            if gone {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        if matches!(&result, Ok(o) if o.finish == FinishReason::Cancelled) {
            cancelled.fetch_add(1, Ordering::Relaxed);
        }
        let msg = match result {
            Ok(outcome) => Msg::Done {
                finish: outcome.finish,
                prompt_tokens: outcome.stats.prompt_tokens,
                completion_tokens: outcome.stats.generated,
                prompt_tps: outcome.stats.prompt_rate().map_or(0.0, |r| r.1),
                decode_tps: outcome.stats.decode_rate().map_or(0.0, |r| r.1),
            },
            Err(e) => Msg::Failed(ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: e.to_string(),
                kind: "server_error",
                param: None,
                code: None,
            }),
        };
        let _ = answer.send(msg);
    }
}

async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"status": "ok", "cancelled": state.cancelled.load(Ordering::Relaxed)}))
}

fn check_key(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(key) = &state.api_key else { return Ok(()) };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(given) if given.trim() == key => Ok(()),
        Some(_) => Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "Incorrect API key provided.".into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
        }),
        None => Err(ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "Missing API key: send `Authorization: Bearer KEY`.".into(),
            kind: "invalid_request_error",
            param: None,
            code: Some("invalid_api_key"),
        }),
    }
}

async fn models(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    check_key(&state, &headers)?;
    Ok(Json(
        json!({"object": "list", "data": [{"id": state.model, "object": "model", "created": now(), "owned_by": "egpu"}]}),
    ))
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Reads and parses the JSON body within the size limit.
async fn json_body(state: &AppState, request: Request) -> Result<Value, ApiError> {
    check_key(state, request.headers())?;
    let bytes =
        axum::body::to_bytes(request.into_body(), state.max_body).await.map_err(|_| ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!(
                "the request body is larger than {} bytes (egpu serve --max-body-bytes)",
                state.max_body
            ),
            kind: "invalid_request_error",
            param: None,
            code: Some("request_too_large"),
        })?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}"), None))?;
    if !value.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object", None));
    }
    Ok(value)
}

struct Common {
    options: GenerateOptions,
    stream: bool,
    include_usage: bool,
}

/// The fields both endpoints share: model, sampling, limits, stop, stream.
fn common(state: &AppState, body: &Value) -> Result<Common, ApiError> {
    match body.get("model") {
        None | Some(Value::Null) => {}
        Some(Value::String(m)) if *m == state.model => {}
        Some(Value::String(m)) => {
            return Err(ApiError {
                status: StatusCode::NOT_FOUND,
                message: format!(
                    "The model `{m}` does not exist; this server has `{}`.",
                    state.model
                ),
                kind: "invalid_request_error",
                param: Some("model"),
                code: Some("model_not_found"),
            })
        }
        Some(_) => return Err(ApiError::bad_request("`model` must be a string", Some("model"))),
    }
    let float = |name: &'static str, default: f32| -> Result<f32, ApiError> {
        match body.get(name) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_f64().map(|f| f as f32).ok_or_else(|| {
                ApiError::bad_request(format!("`{name}` must be a number"), Some(name))
            }),
        }
    };
    let int = |name: &'static str| -> Result<Option<i64>, ApiError> {
        match body.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                ApiError::bad_request(format!("`{name}` must be an integer"), Some(name))
            }),
        }
    };
    let d = &state.defaults;
    let sampler = SamplerConfig {
        temperature: float("temperature", d.temperature)?,
        top_p: float("top_p", d.top_p)?,
        min_p: float("min_p", d.min_p)?,
        repeat_penalty: float("repeat_penalty", d.repeat_penalty)?,
        top_k: match int("top_k")? {
            None => d.top_k,
            Some(k) => usize::try_from(k)
                .map_err(|_| ApiError::bad_request("`top_k` must be 0 or more", Some("top_k")))?,
        },
        repeat_last_n: d.repeat_last_n,
        seed: resolve_seed(int("seed")?.map_or(state.seed, i128::from)),
    };
    sampler.validate().map_err(|e| ApiError::bad_request(e.to_string(), None))?;
    if let Some(n) = int("n")? {
        if n != 1 {
            return Err(ApiError::bad_request("only n = 1 is supported", Some("n")));
        }
    }
    let max_tokens = match int("max_completion_tokens")?.or(int("max_tokens")?) {
        None => state.max_tokens,
        Some(n) if n >= 1 && n as u64 <= state.max_tokens as u64 => n as usize,
        Some(n) => {
            return Err(ApiError::bad_request(
                format!("max_tokens is {n}; allowed 1 to {} on this server", state.max_tokens),
                Some("max_tokens"),
            ))
        }
    };
    let stop = match body.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if items.len() <= 4 => items
            .iter()
            .map(|s| s.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ApiError::bad_request("`stop` must be a string or up to 4 strings", Some("stop"))
            })?,
        Some(_) => {
            return Err(ApiError::bad_request(
                "`stop` must be a string or up to 4 strings",
                Some("stop"),
            ))
        }
    };
    let stream = match body.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::bad_request("`stream` must be true or false", Some("stream")))
        }
    };
    let include_usage =
        body.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);
    Ok(Common {
        options: GenerateOptions { max_tokens: Some(max_tokens), sampler, stop, batch: 64 },
        stream,
        include_usage,
    })
}

fn message_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        // The array form: [{"type": "text", "text": "..."}]
        Value::Array(parts) => parts
            .iter()
            .map(|p| {
                match (p.get("type").and_then(Value::as_str), p.get("text").and_then(Value::as_str))
                {
                    (Some("text"), Some(t)) => Some(t.to_owned()),
                    _ => None,
                }
            })
            .collect::<Option<Vec<_>>>()
            .map(|v| v.concat()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

async fn chat_completions(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let body = match json_body(&state, request).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let parsed = common(&state, &body).and_then(|c| {
        let messages =
            body.get("messages").and_then(Value::as_array).filter(|m| !m.is_empty()).ok_or_else(
                || ApiError::bad_request("`messages` must be a non-empty array", Some("messages")),
            )?;
        let messages = messages
            .iter()
            .map(|m| {
                let role = m.get("role").and_then(Value::as_str);
                let content = m.get("content").and_then(message_text);
                match (role, content) {
                    (Some(r @ ("system" | "developer" | "user" | "assistant")), Some(c)) => {
                        Ok(ChatMessage::new(if r == "developer" { "system" } else { r }, &c))
                    }
                    _ => Err(ApiError::bad_request(
                        "each message needs a role (system, user or assistant) and text content",
                        Some("messages"),
                    )),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((c, messages))
    });
    match parsed {
        Ok((c, messages)) => respond(state, Prompt::Chat(messages), c, true).await,
        Err(e) => e.into_response(),
    }
}

async fn completions(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let body = match json_body(&state, request).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let parsed = common(&state, &body).and_then(|c| {
        let prompt = match body.get("prompt") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
                a[0].as_str().unwrap_or_default().to_owned()
            }
            _ => return Err(ApiError::bad_request("`prompt` must be a string", Some("prompt"))),
        };
        if prompt.is_empty() {
            return Err(ApiError::bad_request("`prompt` is empty", Some("prompt")));
        }
        Ok((c, prompt))
    });
    match parsed {
        Ok((c, prompt)) => respond(state, Prompt::Text(prompt), c, false).await,
        Err(e) => e.into_response(),
    }
}

fn finish_name(finish: FinishReason) -> &'static str {
    match finish {
        FinishReason::EndOfText | FinishReason::Stop | FinishReason::Cancelled => "stop",
        FinishReason::Length | FinishReason::ContextFull => "length",
    }
}

async fn respond(state: Arc<AppState>, prompt: Prompt, c: Common, chat: bool) -> Response {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let job = Job { prompt, options: c.options, answer: tx };
    if let Err(e) = state.jobs.try_send(job) {
        let message = match e {
            TrySendError::Full(_) => "the server's queue is full; retry shortly",
            TrySendError::Disconnected(_) => "the model thread has stopped",
        };
        return ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
        }
        .into_response();
    }
    let id = format!(
        "{}-{}",
        if chat { "chatcmpl" } else { "cmpl" },
        state.next_id.fetch_add(1, Ordering::Relaxed)
    );
    let created = now();
    let model = state.model.clone();
    let started = Instant::now();
    if !c.stream {
        let mut text = String::new();
        while let Some(msg) = rx.recv().await {
            match msg {
                Msg::Text(t) => text.push_str(&t),
                Msg::Failed(e) => return e.into_response(),
                Msg::Done { finish, prompt_tokens, completion_tokens, prompt_tps, decode_tps } => {
                    let choice = if chat {
                        json!({"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": null, "finish_reason": finish_name(finish)})
                    } else {
                        json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish_name(finish)})
                    };
                    return Json(json!({
                        "id": id,
                        "object": if chat { "chat.completion" } else { "text_completion" },
                        "created": created,
                        "model": model,
                        "choices": [choice],
                        "usage": usage(prompt_tokens, completion_tokens),
                        "timings": {"prompt_per_second": prompt_tps, "predicted_per_second": decode_tps, "total_ms": started.elapsed().as_millis() as u64},
                    }))
                    .into_response();
                }
            }
        }
        return ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "the model thread stopped".into(),
            kind: "server_error",
            param: None,
            code: None,
        }
        .into_response();
    }
    // A failure before the first token is a plain JSON error with its status.
    let first = match rx.recv().await {
        Some(Msg::Failed(e)) => return e.into_response(),
        Some(m) => m,
        None => {
            return ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: "the model thread stopped".into(),
                kind: "server_error",
                param: None,
                code: None,
            }
            .into_response()
        }
    };
    let chunk = move |delta: Value, finish: Option<&str>| -> Value {
        let choice = if chat {
            json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
        } else {
            json!({"index": 0, "text": delta.get("content").cloned().unwrap_or(json!("")), "logprobs": null, "finish_reason": finish})
        };
        json!({"id": id, "object": if chat { "chat.completion.chunk" } else { "text_completion" }, "created": created, "model": model, "choices": [choice]})
    };
    let opening = if chat {
        vec![chunk(json!({"role": "assistant", "content": ""}), None)]
    } else {
        Vec::new()
    };
    let include_usage = c.include_usage;
    let events = stream::iter(
        opening.into_iter().map(|v| Ok::<_, Infallible>(SseEvent::default().data(v.to_string()))),
    );
    let to_events = move |msg: Msg| -> (Vec<Value>, bool) {
        match msg {
            Msg::Text(t) => (vec![chunk(json!({"content": t}), None)], false),
            Msg::Done { finish, prompt_tokens, completion_tokens, prompt_tps, decode_tps } => {
                let mut last = chunk(json!({}), Some(finish_name(finish)));
                last["timings"] = json!({"prompt_per_second": prompt_tps, "predicted_per_second": decode_tps, "prompt_n": prompt_tokens, "predicted_n": completion_tokens});
                let mut out = vec![last];
                if include_usage {
                    let mut u = chunk(json!({}), None);
                    u["choices"] = json!([]);
                    u["usage"] = usage(prompt_tokens, completion_tokens);
                    out.push(u);
                }
                (out, true)
            }
            Msg::Failed(e) => (vec![e.body()], true),
        }
    };
    let rest = stream::unfold((Some(first), rx, false), move |(pending, mut rx, done)| {
        let to_events = to_events.clone();
        async move {
            if done {
                return None;
            }
            let msg = match pending {
                Some(m) => Some(m),
                None => rx.recv().await,
            };
            let Some(msg) = msg else {
                return Some((vec![SseEvent::default().data("[DONE]")], (None, rx, true)));
            };
            let (values, end) = to_events(msg);
            let mut events: Vec<SseEvent> =
                values.into_iter().map(|v| SseEvent::default().data(v.to_string())).collect();
            if end {
                events.push(SseEvent::default().data("[DONE]"));
            }
            Some((events, (None, rx, end)))
        }
    })
    .flat_map(|events| stream::iter(events.into_iter().map(Ok::<_, Infallible>)));
    sse(events.chain(rest))
}

fn sse(events: impl Stream<Item = Result<SseEvent, Infallible>> + Send + 'static) -> Response {
    Sse::new(events).into_response()
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}
