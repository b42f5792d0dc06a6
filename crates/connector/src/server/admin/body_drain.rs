//! Admin request bodies over their route's limit are read to their end (at
//! most 4× the limit, within 30 s) before the 413 goes out, with
//! `Connection: close`. axum's `DefaultBodyLimit` stops reading at the
//! limit, and a client still sending then sees its connection reset
//! instead of the answer that says what was wrong (a loaded CI run saw a
//! broken pipe where a 413 was due).

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;

/// How long the rest of an oversized body may take to arrive.
const DRAIN_FOR: Duration = Duration::from_secs(30);

/// Read the body up to `limit` (plus one frame) and hand it to the route,
/// whose own extractor answers 413 with its message when it is over; then
/// read and drop the rest before answering.
pub async fn drain_over_limit(limit: usize, request: Request, next: Next) -> Response {
    let cap = limit.saturating_mul(4);
    let (parts, mut body) = request.into_parts();
    let announced = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > cap as u64) {
        // Too big to be worth reading: the route refuses it by its length.
        let response = next.run(Request::from_parts(parts, body)).await;
        return closing(response);
    }
    let mut buf: Vec<u8> = Vec::new();
    let mut over = false;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return (
                StatusCode::BAD_REQUEST,
                "the request body could not be read\n",
            )
                .into_response();
        };
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() > limit {
                over = true;
                break;
            }
        }
    }
    let seen = buf.len();
    let response = next.run(Request::from_parts(parts, Body::from(buf))).await;
    if !over {
        return response;
    }
    let _ = tokio::time::timeout(DRAIN_FOR, drain(body, cap.saturating_sub(seen))).await;
    closing(response)
}

/// Read and drop up to `left` more bytes.
async fn drain(mut body: Body, mut left: usize) {
    while let Some(Ok(frame)) = body.frame().await {
        let n = frame.data_ref().map_or(0, |d| d.len());
        if n > left {
            return;
        }
        left -= n;
    }
}

fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::body::Bytes;
    use axum::routing::post;
    use tower::ServiceExt;

    fn app(limit: usize) -> Router {
        Router::new().route(
            "/",
            post(
                |body: Result<Bytes, axum::extract::rejection::BytesRejection>| async move {
                    match body {
                        Ok(b) => (StatusCode::OK, format!("{}", b.len())),
                        Err(e) => (e.status(), "too big".to_string()),
                    }
                },
            )
            .layer(axum::extract::DefaultBodyLimit::max(limit))
            .layer(axum::middleware::from_fn(move |r, n| {
                drain_over_limit(limit, r, n)
            })),
        )
    }

    async fn send(limit: usize, body: Vec<u8>) -> (StatusCode, String, bool) {
        let req = Request::post("/");
        let res = app(limit)
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let close = res.headers().get(header::CONNECTION).is_some();
        let text = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&text).into_owned(), close)
    }

    #[tokio::test]
    async fn within_the_limit_the_route_gets_the_whole_body() {
        assert_eq!(
            send(10, vec![b'x'; 10]).await,
            (StatusCode::OK, "10".into(), false)
        );
        assert_eq!(send(10, vec![]).await, (StatusCode::OK, "0".into(), false));
    }

    #[tokio::test]
    async fn over_it_the_route_refuses_and_the_connection_closes() {
        let (status, text, close) = send(10, vec![b'x'; 35]).await;
        assert_eq!(
            (status, text.as_str(), close),
            (StatusCode::PAYLOAD_TOO_LARGE, "too big", true)
        );
        // More than 4× the limit: the rest is not read; still refused.
        let (status, _, close) = send(10, vec![b'x'; 100]).await;
        assert_eq!((status, close), (StatusCode::PAYLOAD_TOO_LARGE, true));
    }
}
