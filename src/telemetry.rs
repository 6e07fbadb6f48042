//! Telemetry: logs, request spans and the Prometheus metrics registry.
//!
//! Logs go to stdout as JSON (for machines) or pretty text (for people). Every request runs
//! inside an `http_request` span carrying a fresh request id, which is also sent back in the
//! `X-Request-Id` header, and ends with one "request completed" line.
//!
//! Secrets never reach the logs, by construction rather than by filtering: the request span
//! records the method, the matched route and the path, never the query string (which may
//! hold `access_token`), headers (which hold `Authorization`) or bodies (passwords, refresh
//! tokens, OTP codes). Configuration values that are secret print as `<redacted>`.
//!
//! [`Metrics`] owns a private registry per application, so tests that run several servers
//! in one process see their own counters. The metric names are part of the contract.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::web;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tracing::Instrument;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;
use uuid::Uuid;

use crate::config::LogFormat;

/// Installs the global tracing subscriber writing to `writer`.
///
/// Call once per process (the binary does); a second call returns an error.
pub fn init<W>(format: LogFormat, filter: &str, writer: W) -> anyhow::Result<()>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let result = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.with_target(false).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("could not install the log subscriber: {e}"))
}

/// The application's metrics. Cloning shares the underlying series.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub http_request_duration: HistogramVec,
    pub ws_connections: IntGaugeVec,
    pub location_updates: IntCounterVec,
    pub assignment_latency: prometheus::Histogram,
    pub orders: IntGaugeVec,
    /// Refused location points by reason (out_of_range, future, jump).
    pub location_rejected: IntCounterVec,
    /// Offers by outcome (made, accepted, rejected, expired); acceptance rate is
    /// accepted / made.
    pub offers: IntCounterVec,
    /// Rider sockets opened, by transport: `direct` (left actix-http's dispatcher after the
    /// handshake, the lean path) or `dispatcher` (opened on a kept-alive connection).
    pub rider_sockets: IntCounterVec,
    /// Rider frames other than locations shed because the socket's queue to the session
    /// was full (`kind` = availability, offer_response, order_status).
    pub rider_frames_shed: IntCounterVec,
}

/// A registered counter family with one label, each of `zeroes` present at 0.
fn counters(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
    zeroes: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    let family = IntCounterVec::new(Opts::new(name, help), &[label])?;
    registry.register(Box::new(family.clone()))?;
    for value in zeroes {
        family.with_label_values(&[value]).inc_by(0);
    }
    Ok(family)
}

/// A registered gauge family with one label, each of `zeroes` present at 0.
fn gauges(
    registry: &Registry,
    name: &str,
    help: &str,
    label: &str,
    zeroes: &[&str],
) -> Result<IntGaugeVec, prometheus::Error> {
    let family = IntGaugeVec::new(Opts::new(name, help), &[label])?;
    registry.register(Box::new(family.clone()))?;
    for value in zeroes {
        family.with_label_values(&[value]).set(0);
    }
    Ok(family)
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let http_request_duration = HistogramVec::new(
            HistogramOpts::new(
                "medify_http_request_duration_seconds",
                "HTTP request latency by method, matched route and status",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
            &["method", "route", "status"],
        )?;
        registry.register(Box::new(http_request_duration.clone()))?;
        let assignment_latency = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "medify_assignment_latency_seconds",
                "Time from order confirmed to rider accepted",
            )
            .buckets(vec![
                0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
            ]),
        )?;
        registry.register(Box::new(assignment_latency.clone()))?;
        // Zero-valued series so dashboards find every label before the first event.
        let r = &registry;
        let ws_connections = gauges(
            r,
            "medify_ws_connections",
            "Open WebSocket connections by kind",
            "kind",
            &["rider", "track", "ops"],
        )?;
        let orders = gauges(
            r,
            "medify_orders",
            "Orders by current status",
            "status",
            &[],
        )?;
        let location_updates = counters(
            r,
            "medify_location_updates_total",
            "Rider location points received, by outcome",
            "outcome",
            &["accepted", "rejected", "rate_limited"],
        )?;
        let location_rejected = counters(
            r,
            "medify_location_rejected_total",
            "Refused location points by reason",
            "reason",
            &["out_of_range", "future", "stale", "jump"],
        )?;
        let offers = counters(
            r,
            "medify_offers_total",
            "Offers to riders by outcome",
            "outcome",
            &["made", "accepted", "rejected", "expired"],
        )?;
        let rider_sockets = counters(
            r,
            "medify_rider_sockets_total",
            "Rider sockets opened, by transport (direct or dispatcher)",
            "transport",
            &["direct", "dispatcher"],
        )?;
        let rider_frames_shed = counters(
            r,
            "medify_rider_frames_shed_total",
            "Rider frames (not locations) dropped because the socket's queue to the session was full",
            "kind",
            &["availability", "offer_response", "order_status"],
        )?;
        Ok(Self {
            registry,
            http_request_duration,
            ws_connections,
            location_updates,
            assignment_latency,
            orders,
            location_rejected,
            offers,
            rider_sockets,
            rider_frames_shed,
        })
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "could not encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The `method` label of a request: one of the standard methods, or `other`. Clients may
/// send any token as a method; labelling each one would let anyone grow `/metrics` (and
/// this process) without bound.
pub fn method_label(method: &actix_web::http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

/// Middleware: request span, request id, completion log line and latency histogram.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let start = Instant::now();
    let request_id = Uuid::now_v7();
    let method = method_label(req.method());
    // The route pattern (`/api/v1/orders/{id}`) keeps metric labels bounded; anything that
    // matched no route is "unmatched".
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let metrics = req
        .app_data::<web::Data<Metrics>>()
        .map(|metrics| Metrics::clone(metrics));
    let span = tracing::info_span!(
        "http_request",
        request_id = %request_id,
        method = %method,
        route = %route,
        path = %req.path(),
    );

    span.in_scope(|| tracing::debug!("request started"));
    let result = next.call(req).instrument(span.clone()).await;
    let elapsed = start.elapsed();
    let status = match &result {
        Ok(res) => res.status(),
        Err(e) => e.as_response_error().status_code(),
    };
    if let Some(metrics) = metrics {
        metrics
            .http_request_duration
            .with_label_values(&[method, route.as_str(), status.as_str()])
            .observe(elapsed.as_secs_f64());
    }
    span.in_scope(|| {
        tracing::info!(
            status = status.as_u16(),
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request completed"
        );
    });
    result.map(|mut res| {
        if let Ok(value) = HeaderValue::from_str(&request_id.to_string()) {
            res.headers_mut().insert(REQUEST_ID, value);
        }
        res
    })
}

#[cfg(test)]
mod tests {
    use super::method_label;
    use actix_web::http::Method;

    #[test]
    fn standard_methods_keep_their_name_and_others_are_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        for junk in ["FOO", "get", "XYZZY1", "PROPFIND"] {
            let method = Method::from_bytes(junk.as_bytes()).expect("a valid token");
            assert_eq!(method_label(&method), "other", "{junk}");
        }
    }
}
