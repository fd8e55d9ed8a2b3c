//! `hiscale gateway --topology FILE [--datacenter NAME]`: the demo's small gateway in front of
//! one datacenter of a topology, where HAProxy is not wanted (the emulated datacenters of
//! `hiscale dc-demo` and the tests): `/{sa}/…` to that SA's units of the datacenter, and
//! `GET /dc/health`.

use std::path::Path;

use crate::demo::gateway::{Gateway, RoutedArea};

/// Serves the gateway of `datacenter` (the only one when `None`) on its `listen` address until
/// Ctrl-C or SIGTERM.
pub async fn serve(path: &Path, datacenter: Option<&str>) -> anyhow::Result<()> {
    let stop = crate::demo::stop_requested()?;
    let topology = crate::topology::load_checked(path)?;
    let datacenter = topology.datacenter(datacenter)?;
    let areas: Vec<RoutedArea> = topology
        .in_datacenter(&datacenter.name)
        .map(|sa| RoutedArea {
            name: sa.name.get_ref().clone(),
            units: sa
                .service_units()
                .map(|unit| unit.get_ref().listen)
                .collect(),
            limits: sa.limits.clone(),
        })
        .collect();
    if datacenter.gateway.tls_certificate.is_some() {
        anyhow::bail!(
            "the gateway of datacenter {} terminates TLS (tls_certificate), which only HAProxy \
             does: run HAProxy with `hiscale haproxy-config`",
            datacenter.name
        );
    }
    let listener = Gateway::listen(datacenter.gateway.listen).await?;
    let gateway = Gateway::start(listener, areas, None)?;
    tracing::info!(
        "gateway of datacenter {} on http://{}",
        datacenter.name,
        gateway.address()
    );
    stop.await;
    gateway.shutdown().await;
    Ok(())
}
