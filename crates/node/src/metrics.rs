//! The Prometheus endpoint. Metric names are prefixed `elastickv_`.

use std::net::SocketAddr;

use metrics_exporter_prometheus::PrometheusBuilder;

/// Serves metrics over HTTP at `addr` (`/metrics`, or any path).
pub fn install(addr: SocketAddr) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(addr)
        .install()
        .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))
}
