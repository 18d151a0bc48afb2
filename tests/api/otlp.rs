//! OTLP trace export with the real binary: a receiver on loopback takes `POST /v1/traces`
//! (protobuf), the server exports one span per request named by route pattern, with the
//! status code, under an incoming W3C `traceparent`, and no identifier value from a path
//! or query string anywhere in what it sends; a receiver that is down fails no request and
//! delays no stop.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpResponse, HttpServer};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use crate::helpers::{http_client, ServeProcess};

/// Every request body the receiver got.
type Received = Arc<Mutex<Vec<Vec<u8>>>>;

async fn traces(body: web::Bytes, got: web::Data<Received>) -> HttpResponse {
    got.lock().unwrap().push(body.to_vec());
    HttpResponse::Ok()
        .content_type("application/x-protobuf")
        .body(ExportTraceServiceRequest::default().encode_to_vec())
}

/// An OTLP/HTTP receiver on a free loopback port: its base URL and what it received.
fn receiver() -> (String, Received) {
    let got: Received = Arc::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let data = web::Data::new(got.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(16 * 1024 * 1024))
            .route("/v1/traces", web::post().to(traces))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listen")
    .run();
    tokio::spawn(server);
    (format!("http://127.0.0.1:{port}"), got)
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn request_spans_are_exported_by_route_pattern_without_values() {
    let (endpoint, got) = receiver();
    let data = tempfile::tempdir().expect("temp dir");
    let mut server = ServeProcess::start_with_env(
        data.path(),
        &[("IDGRAPH_TELEMETRY__OTLP_ENDPOINT".into(), endpoint)],
    );
    let c = http_client();
    let health = c
        .get(server.url("/health"))
        .send()
        .await
        .expect("GET /health");
    assert_eq!(health.status(), 200);
    let child = c
        .get(server.url("/health"))
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .send()
        .await
        .expect("GET /health with traceparent");
    assert_eq!(child.status(), 200);
    let profile = c
        .get(server.url("/v1/profiles/path.leak@example.com"))
        .send()
        .await
        .expect("GET /v1/profiles/{id}");
    let profile_status = i64::from(profile.status().as_u16());
    let lookup = c
        .get(server.url("/v1/lookup?kind=email&value=query.leak%40example.com"))
        .send()
        .await
        .expect("GET /v1/lookup");
    let lookup_status = i64::from(lookup.status().as_u16());

    // SIGTERM: the server flushes the spans still queued before it exits.
    let status = server.terminate();
    assert!(status.success(), "{status:?}\n{}", server.stderr());
    let deadline = Instant::now() + Duration::from_secs(20);
    let spans: Vec<(Vec<KeyValue>, Span)> = loop {
        let bodies = got.lock().unwrap().clone();
        let mut spans = Vec::new();
        for body in &bodies {
            let leaked = ["path.leak", "query.leak", "example.com"]
                .iter()
                .any(|v| body.windows(v.len()).any(|w| w == v.as_bytes()));
            assert!(!leaked, "an identifier value was exported: {body:?}");
            let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("protobuf");
            for resource in request.resource_spans {
                let attrs = resource.resource.map(|r| r.attributes).unwrap_or_default();
                for scope in resource.scope_spans {
                    spans.extend(scope.spans.into_iter().map(|s| (attrs.clone(), s)));
                }
            }
        }
        if spans.len() >= 4 {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "{} spans received: {spans:?}\n{}",
            spans.len(),
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    for (resource, _) in &spans {
        assert_eq!(
            attr(resource, "service.name"),
            Some(&any_value::Value::StringValue("idgraph".into()))
        );
    }
    let named = |name: &str| -> Vec<&Span> {
        spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.name == name)
            .collect()
    };
    let health = named("GET /health");
    assert_eq!(health.len(), 2, "{spans:?}");
    for span in &health {
        assert_eq!(span.kind, SpanKind::Server as i32, "{span:?}");
        assert_eq!(
            attr(&span.attributes, "http.status_code"),
            Some(&any_value::Value::IntValue(200))
        );
        assert_eq!(
            attr(&span.attributes, "http.route"),
            Some(&any_value::Value::StringValue("/health".into()))
        );
    }
    let children: Vec<_> = health
        .iter()
        .filter(|s| hex(&s.trace_id) == TRACE_ID)
        .collect();
    assert_eq!(
        children.len(),
        1,
        "the traceparent was not honoured: {health:?}"
    );
    assert_eq!(hex(&children[0].parent_span_id), PARENT_ID);
    let root = health.iter().find(|s| hex(&s.trace_id) != TRACE_ID);
    assert!(
        root.is_some_and(|s| s.parent_span_id.is_empty()),
        "{health:?}"
    );

    let profile = named("GET /v1/profiles/{id}");
    assert_eq!(profile.len(), 1, "{spans:?}");
    assert_eq!(
        attr(&profile[0].attributes, "http.status_code"),
        Some(&any_value::Value::IntValue(profile_status))
    );
    let lookup = named("GET /v1/lookup");
    assert_eq!(lookup.len(), 1, "{spans:?}");
    assert_eq!(
        attr(&lookup[0].attributes, "http.status_code"),
        Some(&any_value::Value::IntValue(lookup_status))
    );
}

#[tokio::test]
async fn a_receiver_that_is_down_fails_no_request_and_delays_no_stop() {
    // Nothing listens on the port of a listener that is bound and dropped.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let data = tempfile::tempdir().expect("temp dir");
    let mut server = ServeProcess::start_with_env(
        data.path(),
        &[(
            "IDGRAPH_TELEMETRY__OTLP_ENDPOINT".into(),
            format!("http://127.0.0.1:{port}"),
        )],
    );
    let c = http_client();
    for _ in 0..3 {
        let health = c
            .get(server.url("/health"))
            .send()
            .await
            .expect("GET /health");
        assert_eq!(health.status(), 200);
    }
    let started = Instant::now();
    let status = server.terminate();
    assert!(status.success(), "{status:?}\n{}", server.stderr());
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the stop waited {:?} for the receiver",
        started.elapsed()
    );
}
