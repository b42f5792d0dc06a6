//! Shared helpers for the sandbox tests: start the sandbox in-process on a
//! random port, get tokens, call the API, and receive callbacks on a small
//! axum server of our own.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use base64::Engine;
use mydex_sandbox::{Sandbox, SandboxArgs, start};
use serde_json::{Value, json};
use sha2::{Digest, Sha512};

pub const NID: &str = "45678";
pub const TOKEN: &str = "sandbox-connection-token";
pub const RETURN_TO: &str = "https://sbx-my.mydex.org";

pub fn sha512_hex(s: &str) -> String {
    hex::encode(Sha512::digest(s.as_bytes()))
}

pub fn token_hash() -> String {
    sha512_hex(TOKEN)
}

/// One callback as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub headers: HeaderMap,
    pub body: String,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("callback body is JSON")
    }

    pub fn form(&self) -> Vec<(String, String)> {
        serde_urlencoded::from_str(&self.body).expect("callback body is a form")
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

#[derive(Default)]
struct ReceiverState {
    seen: Mutex<Vec<Received>>,
    /// Statuses to answer with, in order; 200 once exhausted.
    script: Mutex<VecDeque<u16>>,
}

/// A callback receiver on a random port.
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    state.seen.lock().unwrap().push(Received {
        method,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let code = state.script.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(code).unwrap()
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(ReceiverState::default());
        let app = Router::new()
            .route("/mydex/callback", axum::routing::post(receive).put(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            url: format!("http://{addr}/mydex/callback"),
            state,
        }
    }

    /// Answer the next callbacks with these statuses.
    pub fn script(&self, statuses: &[u16]) {
        self.state.script.lock().unwrap().extend(statuses);
    }

    pub fn seen(&self) -> Vec<Received> {
        self.state.seen.lock().unwrap().clone()
    }

    pub fn last(&self) -> Received {
        self.seen()
            .last()
            .cloned()
            .expect("a callback was received")
    }
}

/// A sandbox plus an HTTP client and a callback receiver.
pub struct Env {
    pub sb: Sandbox,
    pub base: String,
    pub http: reqwest::Client,
    pub receiver: Receiver,
}

impl Env {
    pub async fn start() -> Env {
        Env::start_with(|_| {}).await
    }

    pub async fn start_with(f: impl FnOnce(&mut SandboxArgs)) -> Env {
        let receiver = Receiver::start().await;
        let mut args = SandboxArgs {
            listen: "127.0.0.1:0".parse().unwrap(),
            callback_url: receiver.url.clone(),
            ..Default::default()
        };
        f(&mut args);
        let sb = start(args).await.expect("sandbox starts");
        let base = sb.url();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Env {
            sb,
            base,
            http,
            receiver,
        }
    }

    pub fn basic(id: &str, secret: &str) -> String {
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let raw = format!("{}:{}", enc(id), enc(secret));
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    pub async fn token_response(&self, id: &str, secret: &str, body: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/oauth2/token", self.base))
            .header("Authorization", Env::basic(id, secret))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    pub async fn token(&self) -> String {
        let resp = self
            .token_response(
                "sandbox-client",
                "sandbox-secret",
                "grant_type=client_credentials&scope=mydex%3Apdx",
            )
            .await;
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        v["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn post_api(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub fn setup_body(&self) -> Value {
        json!({
            "connection_nid": NID,
            "connection_token_hash": token_hash(),
            "return_to": RETURN_TO,
        })
    }

    /// A fresh FTC link with these extra fields.
    pub async fn ftc_link(&self, extra: Value) -> String {
        let token = self.token().await;
        let mut body = self.setup_body();
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let resp = self.post_api("/ftc/setup", &token, &body).await;
        assert_eq!(resp.status(), 201);
        let v: Value = resp.json().await.unwrap();
        v["url"].as_str().unwrap().to_owned()
    }

    pub async fn identify_link(&self, linking_token: &str) -> String {
        let token = self.token().await;
        let mut body = self.setup_body();
        body["linking_token"] = json!(linking_token);
        let resp = self.post_api("/identify", &token, &body).await;
        assert_eq!(resp.status(), 201);
        let v: Value = resp.json().await.unwrap();
        v["url"].as_str().unwrap().to_owned()
    }

    /// `GET /access-token/{nid}` with a bearer: (status, answer).
    pub async fn access_token(&self, bearer: &str, nid: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}/access-token/{nid}", self.base))
            .bearer_auth(bearer)
            .header("Content-Type", "application/json")
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A fresh short access token.
    pub async fn short_token(&self, bearer: &str) -> String {
        let (status, v) = self.access_token(bearer, NID).await;
        assert_eq!(status, 200, "{v}");
        v.as_str().expect("a JSON string").to_owned()
    }

    /// `POST {path}` of the older flow with these optional headers.
    pub async fn post_connection(
        &self,
        path: &str,
        bearer: &str,
        short: Option<&str>,
        authentication: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(bearer)
            .json(body);
        if let Some(s) = short {
            req = req.header("Short-Access-Token", s);
        }
        if let Some(a) = authentication {
            req = req.header("Authentication", a);
        }
        req.send().await.unwrap()
    }

    /// A link by the older flow, as Mydex's example scripts ask for it.
    pub async fn connection_link(&self, path: &str, extra: Value) -> String {
        let bearer = self.token().await;
        let short = self.short_token(&bearer).await;
        let mut body = self.setup_body();
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            for (k, v) in e {
                b.insert(k.clone(), v.clone());
            }
        }
        let auth = sha512_hex(&format!("{short}{TOKEN}"));
        let resp = self
            .post_connection(path, &bearer, Some(&short), Some(&auth), &body)
            .await;
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        v.as_str().expect("a bare JSON string").to_owned()
    }

    pub async fn journey(&self, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/_sandbox/journeys", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    pub async fn settings(&self, body: Value) -> u16 {
        self.http
            .put(format!("{}/_sandbox/settings", self.base))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    pub async fn state(&self) -> Value {
        self.http
            .get(format!("{}/_sandbox/state", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn status(
        &self,
        token: &str,
        nid: &str,
        uid: &str,
        con_id: &str,
        key: &str,
    ) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}/connection/status/{nid}", self.base))
            .query(&[("uid", uid), ("con_id", con_id)])
            .bearer_auth(token)
            .header("Connection-Token", key)
            .header("Content-Type", "application/json")
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn stop(self) {
        self.sb.shutdown().await;
    }
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn addr_of(url: &str) -> SocketAddr {
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}
