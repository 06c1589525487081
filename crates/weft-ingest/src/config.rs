//! Normalizer settings: which fields feed the core columns, and limits.
//!
//! Alias paths are flattened field names (`resource.service.name` matches both
//! a nested object and a literal dotted key). Earlier entries win when a
//! record has several.

use serde::{Deserialize, Serialize};

use crate::level::NumericScheme;

/// Alias lists for the core columns. Each list is in priority order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Aliases {
    pub timestamp: Vec<String>,
    pub service: Vec<String>,
    /// Fields holding a level word or number; see `severity_number` etc. below
    /// for fields whose numbers follow one fixed scheme.
    pub level: Vec<String>,
    /// Fields holding an OpenTelemetry SeverityNumber (1–24).
    pub level_otel: Vec<String>,
    /// Fields holding a logback/log4j `level_value`.
    pub level_logback: Vec<String>,
    /// Fields holding an RFC 5424 syslog severity (0–7).
    pub level_syslog: Vec<String>,
    pub message: Vec<String>,
    pub correlation_id: Vec<String>,
    pub span_id: Vec<String>,
    pub host: Vec<String>,
    /// W3C `traceparent` fields: their trace-id part feeds `correlation_id`
    /// and their parent-id part `span_id`, after the explicit fields above.
    /// The `traceparent` field itself is kept as it is.
    pub traceparent: Vec<String>,
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl Default for Aliases {
    fn default() -> Self {
        Self {
            timestamp: strings(&[
                "timestamp",
                "@timestamp",
                "time",
                "ts",
                "datetime",
                "date",
                "time_local",
                "eventTime",
                "fields.timestamp",
            ]),
            service: strings(&[
                "service",
                "service.name",
                "resource.service.name",
                "service_name",
                "serviceName",
                "app",
                "application",
                "app_name",
                "kubernetes.labels.app",
                "name",
            ]),
            level: strings(&[
                "level",
                "severity",
                "severity_text",
                "severityText",
                "loglevel",
                "log_level",
                "log.level",
                "lvl",
                "fields.level",
            ]),
            level_otel: strings(&["severity_number", "severityNumber"]),
            level_logback: strings(&["level_value"]),
            level_syslog: strings(&["syslog.severity", "syslog_severity"]),
            message: strings(&[
                "message",
                "msg",
                "event",
                "body",
                "fields.message",
                "log",
                "text",
            ]),
            correlation_id: strings(&[
                "correlation_id",
                "correlationId",
                "correlationID",
                "trace_id",
                "traceId",
                "traceID",
                "trace.id",
                "request_id",
                "requestId",
                "requestID",
                "reqId",
                "req_id",
                "x_request_id",
                "x-request-id",
                "fields.correlation_id",
                "fields.trace_id",
                "fields.request_id",
                "span.request_id",
                "span.trace_id",
                "attributes.trace_id",
                "attributes.request_id",
                "context.trace_id",
                "req.id",
            ]),
            span_id: strings(&[
                "span_id",
                "spanId",
                "spanID",
                "span.id",
                "fields.span_id",
                "attributes.span_id",
                "context.span_id",
            ]),
            host: strings(&[
                "host",
                "hostname",
                "host.name",
                "resource.host.name",
                "hostName",
                "host.hostname",
            ]),
            traceparent: strings(&[
                "traceparent",
                "attributes.traceparent",
                "headers.traceparent",
                "fields.traceparent",
            ]),
        }
    }
}

/// Everything the normalizer needs to know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NormalizerConfig {
    pub aliases: Aliases,
    /// Most dynamic columns a table may have; later new fields go to `_extra`.
    pub max_fields: usize,
    /// Deepest nesting of objects and arrays in a record.
    pub max_depth: usize,
}

impl Default for NormalizerConfig {
    fn default() -> Self {
        Self {
            aliases: Aliases::default(),
            max_fields: 1000,
            max_depth: weft_scan::json::DEFAULT_MAX_DEPTH,
        }
    }
}

/// What a field path is an alias of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Timestamp,
    Service,
    Level(NumericScheme),
    Message,
    CorrelationId,
    SpanId,
    Host,
    TraceParent,
}

impl Aliases {
    /// Every (path, role, priority) the lists name. A lower priority number wins.
    pub(crate) fn roles(&self) -> Vec<(String, Role, u8)> {
        let mut out = Vec::new();
        let mut add = |list: &[String], role: Role, base: usize| {
            for (i, p) in list.iter().enumerate() {
                out.push((p.clone(), role, (base + i).min(255) as u8));
            }
        };
        add(&self.timestamp, Role::Timestamp, 0);
        add(&self.service, Role::Service, 0);
        add(&self.level, Role::Level(NumericScheme::Auto), 0);
        let base = self.level.len();
        add(&self.level_otel, Role::Level(NumericScheme::Otel), base);
        let base = base + self.level_otel.len();
        add(
            &self.level_logback,
            Role::Level(NumericScheme::Logback),
            base,
        );
        let base = base + self.level_logback.len();
        add(&self.level_syslog, Role::Level(NumericScheme::Syslog), base);
        add(&self.message, Role::Message, 0);
        add(&self.correlation_id, Role::CorrelationId, 0);
        add(&self.span_id, Role::SpanId, 0);
        add(&self.host, Role::Host, 0);
        // traceparent ranks after every explicit id field.
        let base = self.correlation_id.len().max(self.span_id.len());
        add(&self.traceparent, Role::TraceParent, base);
        out
    }
}
