//! Prometheus metrics: requests by route and status, latency by route,
//! tokens issued by grant type. One registry per server, so tests that run
//! several servers in one process do not see each other's counts.
//!
//! Every label comes from a fixed set, so that no request can add series:
//! routes are path templates (or `unmatched`), methods the standard ones
//! (or `other`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub method: &'static str,
    pub status: u16,
}

/// The label of every path no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// RFC 9110 §9.3 and RFC 5789 methods keep their names; any other method
/// (extension methods are unbounded) is `other`.
pub fn method_label(method: &str) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    STANDARD
        .into_iter()
        .find(|standard| *standard == method)
        .unwrap_or("other")
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrantLabels {
    pub grant_type: String,
}

/// What the audit writer counts; the handles share their values with the
/// registry, so the writer needs no access to the rest of the metrics.
#[derive(Clone, Debug, Default)]
pub struct AuditCounters {
    /// Events the database refused as they were, stored in a safe form.
    pub refused: Counter,
    /// Events dropped because the queue stayed full (never an issuance:
    /// that is refused instead).
    pub unrecorded: Counter,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
    tokens_issued: Family<GrantLabels, Counter>,
    pub audit: AuditCounters,
}

fn latency_histogram() -> Histogram {
    // 100 µs to ~1.6 s: token requests live in the first buckets.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001, 2.0, 15,
    ))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tessera");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        let tokens_issued = Family::<GrantLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "tokens_issued",
            "Tokens issued by grant type",
            tokens_issued.clone(),
        );
        let audit = AuditCounters::default();
        registry.register(
            "audit_events_refused",
            "Audit events the database refused as they were; stored in a safe form",
            audit.refused.clone(),
        );
        registry.register(
            "audit_events_unrecorded",
            "Audit events dropped because the audit queue stayed full",
            audit.unrecorded.clone(),
        );
        Metrics {
            audit,
            registry,
            requests,
            latency,
            tokens_issued,
        }
    }

    /// `route` must be a route template or [`UNMATCHED_ROUTE`].
    pub fn observe_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method_label(method),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    pub fn token_issued(&self, grant_type: &str) {
        self.tokens_issued
            .get_or_create(&GrantLabels {
                grant_type: grant_type.to_owned(),
            })
            .inc();
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_the_standard_set_share_one_label() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("PATCH"), "PATCH");
        assert_eq!(method_label("get"), "other", "methods are case-sensitive");
        assert_eq!(method_label(&"X".repeat(2048)), "other");
    }
}
