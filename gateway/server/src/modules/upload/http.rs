//! The HTTP side of XEP-0363: `PUT` of a slot's file (once, signed, streamed to the blob
//! store with its length enforced), `GET`/`HEAD` with single byte ranges, and CORS, so
//! web clients on other origins can upload and fetch. Served files carry `nosniff` and a
//! sandboxing policy, so an uploaded HTML page cannot script this origin.

use std::io;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::TryStreamExt;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::blobs::PutError;
use super::{unix_now, Upload, UploadService};
use crate::server::Server;

pub fn routes() -> Router<Arc<Server>> {
    Router::new().route("/upload/{service}/{id}/{name}", get(download).put(upload).options(preflight))
}

/// What every answer carries: any origin may upload and fetch (the URLs are the secret).
fn cors(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("Content-Length, Content-Range, Content-Disposition"));
    response
}

fn answer(status: StatusCode, why: &'static str) -> Response {
    cors((status, why).into_response())
}

async fn preflight() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD, PUT, OPTIONS"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Content-Type, Authorization"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    cors(r)
}

/// The service a URL names, and its slot id if well-formed (the id becomes a file name).
fn service_of<'a>(server: &'a Server, service: &str, id: &str) -> Option<&'a Arc<UploadService>> {
    let well_formed = id.len() == super::SLOT_ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then_some(())?;
    server.modules.get::<Upload>()?.services.get(service)
}

#[derive(Deserialize)]
struct Signed {
    expires: i64,
    sig: String,
}

async fn upload(
    State(server): State<Arc<Server>>,
    Path((service, id, name)): Path<(String, String, String)>,
    signed: Result<Query<Signed>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(service) = service_of(&server, &service, &id) else { return answer(StatusCode::NOT_FOUND, "no such slot") };
    let Ok(Query(signed)) = signed else { return answer(StatusCode::FORBIDDEN, "not a signed upload URL") };
    let mut record = match service.record(&server, &id).await {
        Some(r) if r.name == name => r,
        _ => return answer(StatusCode::NOT_FOUND, "no such slot"),
    };
    let Ok(expected) = service.sign(&server, &id, &record, signed.expires).await else {
        return answer(StatusCode::INTERNAL_SERVER_ERROR, "the upload could not be checked");
    };
    if !bool::from(expected.as_bytes().ct_eq(signed.sig.as_bytes())) {
        return answer(StatusCode::FORBIDDEN, "the signature does not match this slot");
    }
    if unix_now() > signed.expires {
        return answer(StatusCode::FORBIDDEN, "the upload URL expired");
    }
    if record.uploaded {
        return answer(StatusCode::CONFLICT, "this slot was used");
    }
    let length = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    match length {
        None => return answer(StatusCode::LENGTH_REQUIRED, "Content-Length is required"),
        Some(n) if n > record.size => return answer(StatusCode::PAYLOAD_TOO_LARGE, "larger than the slot"),
        Some(n) if n != record.size => return answer(StatusCode::BAD_REQUEST, "Content-Length must be the slot's size"),
        Some(_) => {}
    }
    if let Some(slot_type) = &record.content_type {
        let sent = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !sent.eq_ignore_ascii_case(slot_type) {
            return answer(StatusCode::BAD_REQUEST, "Content-Type must be the slot's");
        }
    }
    let stream = Box::pin(body.into_data_stream().map_err(io::Error::other));
    match service.blobs.put(&format!("{}/{id}", service.domain), record.size, stream).await {
        Ok(()) => {}
        Err(PutError::TooLong) => return answer(StatusCode::PAYLOAD_TOO_LARGE, "larger than the slot"),
        Err(PutError::TooShort) => return answer(StatusCode::BAD_REQUEST, "the body ended early"),
        Err(PutError::Exists) => return answer(StatusCode::CONFLICT, "this slot was used"),
        Err(PutError::Io(e)) => {
            tracing::error!(error = %e, "storing an upload failed");
            return answer(StatusCode::INTERNAL_SERVER_ERROR, "the file could not be stored");
        }
    }
    record.uploaded = true;
    let stored = serde_json::to_vec(&record).expect("serializes");
    let scope = jabberwock_storage::UserRef { host: &service.domain, user: "" };
    if let Err(e) = server.store.map_set(scope, super::FILES, &id, Some(&stored)).await {
        tracing::error!(error = %e, "recording an upload failed");
        let _ = service.blobs.delete(&format!("{}/{id}", service.domain)).await;
        return answer(StatusCode::INTERNAL_SERVER_ERROR, "the file could not be stored");
    }
    tracing::info!(owner = %record.owner, size = record.size, "file uploaded");
    answer(StatusCode::CREATED, "")
}

/// `GET` (and `HEAD`, which axum answers from this handler without the body).
async fn download(State(server): State<Arc<Server>>, Path((service, id, name)): Path<(String, String, String)>, headers: HeaderMap) -> Response {
    let Some(service) = service_of(&server, &service, &id) else { return answer(StatusCode::NOT_FOUND, "no such file") };
    let record = match service.record(&server, &id).await {
        Some(r) if r.name == name && r.uploaded && !service.expired(&r, unix_now()) => r,
        _ => return answer(StatusCode::NOT_FOUND, "no such file"),
    };
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(|v| byte_range(v, record.size)) {
        None | Some(Range::Ignored) => None,
        Some(Range::Unsatisfiable) => {
            let mut r = answer(StatusCode::RANGE_NOT_SATISFIABLE, "");
            r.headers_mut().insert(header::CONTENT_RANGE, header_value(format!("bytes */{}", record.size)));
            return r;
        }
        Some(Range::Bytes(start, end)) => Some((start, end)),
    };
    let (start, len) = range.map_or((0, record.size), |(s, e)| (s, e - s + 1));
    let stream = match service.blobs.get(&format!("{}/{id}", service.domain), start, len).await {
        Ok(Some(s)) => s,
        Ok(None) => return answer(StatusCode::NOT_FOUND, "no such file"),
        Err(e) => {
            tracing::error!(error = %e, "reading an upload failed");
            return answer(StatusCode::INTERNAL_SERVER_ERROR, "the file could not be read");
        }
    };
    let mut response = Response::new(Body::from_stream(stream));
    if let Some((s, e)) = range {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        response.headers_mut().insert(header::CONTENT_RANGE, header_value(format!("bytes {s}-{e}/{}", record.size)));
    }
    let content_type = record.content_type.as_deref().unwrap_or("application/octet-stream");
    // Pictures, sound and video show in the browser; anything else is saved as a file.
    let disposition = match content_type.split('/').next() {
        Some("image" | "audio" | "video") => "inline",
        _ => "attachment",
    };
    let encoded = percent_encoding::utf8_percent_encode(&record.name, percent_encoding::NON_ALPHANUMERIC);
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, header_value(content_type.to_owned()));
    h.insert(header::CONTENT_LENGTH, header_value(len.to_string()));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_DISPOSITION, header_value(format!("{disposition}; filename*=UTF-8''{encoded}")));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; sandbox"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400"));
    cors(response)
}

fn header_value(s: String) -> HeaderValue {
    HeaderValue::from_str(&s).unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"))
}

#[derive(Debug, PartialEq)]
enum Range {
    /// First and last byte, inclusive.
    Bytes(u64, u64),
    /// Not a single byte range we serve: the whole file goes out (RFC 9110 §14.2).
    Ignored,
    Unsatisfiable,
}

/// RFC 9110 §14.1.2: `bytes=a-b`, `bytes=a-` or `bytes=-n`, of a file of `size` bytes.
fn byte_range(value: &str, size: u64) -> Range {
    let Some((first, last)) = value.trim().strip_prefix("bytes=").and_then(|r| r.split_once('-')) else { return Range::Ignored };
    if first.contains(',') || last.contains(',') {
        return Range::Ignored;
    }
    let number = |s: &str| s.trim().parse::<u64>().ok();
    let (start, end) = match (first.trim().is_empty(), last.trim().is_empty()) {
        (true, false) => match number(last) {
            Some(0) => return Range::Unsatisfiable,
            Some(n) => (size.saturating_sub(n), size.saturating_sub(1)),
            None => return Range::Ignored,
        },
        (false, true) => match number(first) {
            Some(s) => (s, size.saturating_sub(1)),
            None => return Range::Ignored,
        },
        (false, false) => match (number(first), number(last)) {
            (Some(s), Some(e)) if s <= e => (s, e.min(size.saturating_sub(1))),
            _ => return Range::Ignored,
        },
        (true, true) => return Range::Ignored,
    };
    if size == 0 || start >= size {
        return Range::Unsatisfiable;
    }
    Range::Bytes(start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_ranges() {
        assert_eq!(byte_range("bytes=0-99", 1000), Range::Bytes(0, 99));
        assert_eq!(byte_range("bytes=900-", 1000), Range::Bytes(900, 999));
        assert_eq!(byte_range("bytes=-100", 1000), Range::Bytes(900, 999));
        assert_eq!(byte_range("bytes=-5000", 1000), Range::Bytes(0, 999));
        assert_eq!(byte_range("bytes=990-2000", 1000), Range::Bytes(990, 999));
        assert_eq!(byte_range("bytes=1000-", 1000), Range::Unsatisfiable);
        assert_eq!(byte_range("bytes=-0", 1000), Range::Unsatisfiable);
        assert_eq!(byte_range("bytes=5-2", 1000), Range::Ignored);
        assert_eq!(byte_range("bytes=0-1,5-6", 1000), Range::Ignored);
        assert_eq!(byte_range("items=0-1", 1000), Range::Ignored);
        assert_eq!(byte_range("bytes=18446744073709551616-", 1000), Range::Ignored);
    }
}
