//! Prometheus metrics through the `metrics` facade, on a recorder of the runtime's own (never
//! the process-wide one, so two runtimes, or a program's own recorder, do not mix).
//!
//! Per call, an action's or command's count, failures and latency are recorded where the call
//! is settled; everything else is read from the services' status when `/metrics` is scraped,
//! which costs the hot path nothing.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use metrics::{Counter, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

use crate::runtime::RuntimeHandle;
use crate::status::ServiceState;

/// The latency histogram's buckets, in seconds: 100 µs to 30 s.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
];

/// The name of the latency histogram.
pub(crate) const LATENCY: &str = "sora_action_duration_seconds";

/// One runtime's metrics.
pub(crate) struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    /// Service name -> action or command name -> its handles.
    calls: DashMap<Arc<str>, DashMap<String, Arc<CallMetrics>>>,
}

struct CallMetrics {
    calls: Counter,
    failures: Counter,
    latency: Histogram,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(LATENCY.into()), &BUCKETS)
            .expect("the buckets are not empty")
            .build_recorder();
        Metrics {
            handle: recorder.handle(),
            recorder,
            calls: DashMap::new(),
        }
    }

    /// Records one settled call of `action` on `service`.
    pub(crate) fn record(&self, service: &Arc<str>, action: &str, took: Duration, failed: bool) {
        let found = self
            .calls
            .get(&**service)
            .and_then(|actions| actions.get(action).map(|m| m.clone()));
        let call = found.unwrap_or_else(|| self.register(service, action));
        call.calls.increment(1);
        if failed {
            call.failures.increment(1);
        }
        call.latency.record(took.as_secs_f64());
    }

    fn register(&self, service: &Arc<str>, action: &str) -> Arc<CallMetrics> {
        let labels = [
            ("service", service.to_string()),
            ("action", action.to_owned()),
        ];
        let call = metrics::with_local_recorder(&self.recorder, || CallMetrics {
            calls: counter!("sora_action_calls_total", &labels),
            failures: counter!("sora_action_failures_total", &labels),
            latency: histogram!(LATENCY, &labels),
        });
        let call = Arc::new(call);
        self.calls
            .entry(service.clone())
            .or_default()
            .entry(action.to_owned())
            .or_insert(call)
            .clone()
    }

    /// The Prometheus text: the services' counters and gauges as they are now, and the calls'.
    pub(crate) async fn render(&self, runtime: &RuntimeHandle) -> String {
        let mut statuses = Vec::new();
        for service in runtime.services() {
            if let Ok(status) = service.status().await {
                statuses.push(status);
            }
        }
        metrics::with_local_recorder(&self.recorder, || {
            for s in &statuses {
                let service = [("service", s.name.clone())];
                counter!("sora_service_calls_total", &service).absolute(s.calls);
                counter!("sora_service_failures_total", &service).absolute(s.failures);
                counter!("sora_service_rejected_total", &service).absolute(s.rejected);
                counter!("sora_service_runs_total", &service).absolute(s.runs);
                counter!("sora_service_skipped_ticks_total", &service).absolute(s.skipped);
                counter!("sora_service_restarts_total", &service).absolute(s.restarts);
                counter!("sora_events_emitted_total", &service).absolute(s.events_emitted);
                counter!("sora_events_dropped_total", &service).absolute(s.events_dropped);
                gauge!("sora_service_queue_depth", &service).set(s.queue_depth as f64);
                gauge!("sora_service_in_flight", &service).set(s.in_flight as f64);
                gauge!("sora_service_paused", &service).set(f64::from(u8::from(s.paused)));
                let up = !matches!(
                    s.state,
                    ServiceState::Failed
                        | ServiceState::Restarting
                        | ServiceState::Stopped
                        | ServiceState::Stopping
                        | ServiceState::Disabled
                );
                gauge!("sora_service_up", &service).set(f64::from(u8::from(up)));
            }
        });
        self.handle.render()
    }
}

impl crate::system::RuntimeShared {
    /// The runtime's metrics, kept from now on.
    pub(crate) fn metrics(&self) -> Arc<Metrics> {
        let kept = self
            .metrics
            .get_or_init(|| Arc::new(Metrics::new()))
            .clone();
        kept.into_any()
            .downcast()
            .expect("the runtime's metrics are the control plane's")
    }
}

impl RuntimeHandle {
    /// The runtime's metrics, kept from the first call on.
    pub(crate) fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics()
    }
}

impl crate::system::Recorder for Metrics {
    fn record(&self, service: &Arc<str>, call: &str, took: Duration, failed: bool) {
        Metrics::record(self, service, call, took, failed);
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}
