//! [`Topology::haproxy_config`]: HAProxy's configuration for a topology, so the gateway can
//! never disagree with the units it fronts (`hiscale haproxy-config --topology FILE`).

use std::fmt::Write as _;

use super::{Datacenter, SaDeployment, Topology};
use crate::codes;
use crate::config::FEED_MAX_WAIT_SECS;

/// HAProxy's client and server timeouts exceed the feed's longest long poll by this much, so
/// HAProxy never cuts one.
pub(super) const LONG_POLL_MARGIN_SECS: u64 = 15;

/// The Kubernetes Service of the unit serving the GUI shell.
pub(super) const SHELL_SERVICE: &str = "hiscale-shell";

/// How HAProxy finds the units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Addressing {
    /// By the addresses in the file, resolved once at start (hosts, systemd).
    Fixed,
    /// By names in a Kubernetes cluster's DNS, resolved again as pods move.
    Kubernetes,
}

/// The frontend's connections at once, below the global `maxconn` (4096) so the status page
/// and the checks always find room.
const FRONTEND_MAXCONN: u32 = 4000;

/// A backend's bound on each unit's connections: the SA's `limits.max_connections`, so HAProxy
/// queues requests beyond it (`timeout queue`, then `503 no-unit-available`) instead of the
/// unit turning them away, and the connections a unit keeps for checks stay free for
/// HAProxy's own.
fn unit_connection_bound(out: &mut String, sa: &SaDeployment) {
    out.push_str(
        "    # Each unit takes this many connections at once (its limits.max_connections); \
         more requests wait\n    # here (timeout queue).\n",
    );
    let _ = writeln!(
        out,
        "    default-server maxconn {}",
        sa.limits.max_connections
    );
}

/// Appended to the write backends' `server` lines: one `5xx` answer takes the unit out of the
/// write backend at once (`observe layer7` counts 500 and 502–504 as errors), so a unit
/// restarted between two checks costs one write, not the writes of two check intervals.
const WRITE_SERVER_OPTIONS: &str = " observe layer7 error-limit 1 on-error mark-down";

/// The backend of an SA's writing methods: SA names are identifiers (no `-`), so it cannot be
/// another SA's name.
fn write_backend_name(sa: &str) -> String {
    format!("{sa}-write")
}

/// `host:port` of a unit's base URL (`http://host:port`), as HAProxy's server line names it.
fn server_address(url: &str) -> &str {
    let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
    authority.split('/').next().unwrap_or(authority)
}

impl Topology {
    /// The complete `haproxy.cfg` (HAProxy 2.6 or later): one frontend on the gateway's
    /// address routing `/{sa}/…` to that SA's units round robin, health checks on `/health`,
    /// retries of idempotent requests only, the protocol's error bodies.
    ///
    /// For a topology of one datacenter; [`Topology::haproxy_config_for`] names the datacenter
    /// (empty when the file names none: the check refuses that).
    pub fn haproxy_config(&self) -> String {
        self.datacenters()
            .first()
            .map(|datacenter| self.haproxy_config_for(datacenter))
            .unwrap_or_default()
    }

    /// HAProxy's configuration of one datacenter's gateway: its SAs only, and its
    /// `GET /dc/health`.
    pub fn haproxy_config_for(&self, datacenter: &Datacenter) -> String {
        self.haproxy_config_with(datacenter, Addressing::Fixed)
    }

    /// The configuration for `addressing`: [`Addressing::Kubernetes`] resolves the units' names
    /// through the cluster's DNS ([`Topology::kubernetes_manifests`]).
    pub(super) fn haproxy_config_with(
        &self,
        datacenter: &Datacenter,
        addressing: Addressing,
    ) -> String {
        let generator = Generator {
            topology: self,
            datacenter,
            service_areas: self.in_datacenter(&datacenter.name).collect(),
            addressing,
        };
        generator.config()
    }
}

/// One datacenter's configuration being written.
struct Generator<'a> {
    topology: &'a Topology,
    datacenter: &'a Datacenter,
    service_areas: Vec<&'a SaDeployment>,
    addressing: Addressing,
}

impl Generator<'_> {
    fn config(&self) -> String {
        let mut out = String::new();
        self.header(&mut out);
        self.global_and_defaults(&mut out);
        self.frontend(&mut out);
        for sa in &self.service_areas {
            let name = sa.name.get_ref();
            let _ = writeln!(out, "\nbackend {name}");
            out.push_str("    balance roundrobin\n");
            out.push_str("    option httpchk GET /health\n");
            out.push_str("    http-check expect string PASS\n");
            out.push_str(
                "    # Only reads are retried after the request reached a unit: a write is never \
                 sent twice.\n",
            );
            out.push_str("    http-request disable-l7-retry if !METH_GET !METH_HEAD\n");
            out.push_str(
                "    # Units build their links with this prefix; a client's own value is \
                 replaced.\n",
            );
            let _ = writeln!(
                out,
                "    http-request set-header X-Forwarded-Prefix /{name}"
            );
            let _ = writeln!(
                out,
                "    # /{name}/customers/1?aspects=~person -> /customers/1?aspects=~person, \
                 /{name} -> /"
            );
            let _ = writeln!(out, "    http-request replace-path ^/{name}/?(.*)$ /\\1");
            unit_connection_bound(&mut out, sa);
            self.servers(&mut out, sa, "");
            self.write_backend(&mut out, sa);
        }
        if let Some(shell) = self.datacenter.gateway.shell {
            out.push_str("\nbackend gui_shell\n");
            out.push_str("    option httpchk GET /health\n");
            out.push_str("    http-check expect string PASS\n");
            let address = match self.addressing {
                Addressing::Fixed => shell.to_string(),
                Addressing::Kubernetes => format!("{SHELL_SERVICE}:{}", shell.port()),
            };
            let _ = writeln!(out, "    server shell {address} check");
        }
        if let Some(stats) = self.datacenter.gateway.stats {
            out.push_str(
                "\n# HAProxy's own status page: which units are up, their check results and \
                 traffic.\n",
            );
            out.push_str("frontend stats\n");
            let _ = writeln!(out, "    bind {stats}");
            out.push_str("    stats enable\n    stats uri /stats\n    stats refresh 5s\n");
        }
        out
    }

    fn header(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "# HAProxy in front of the HiScale service units, generated from {name} by\n\
             #\n\
             #     hiscale haproxy-config --topology {name}{datacenter}\n\
             #\n\
             # Do not edit: change the topology and generate again (a test fails when the two \
             differ).\n\
             # One frontend on {listen}{tls} routes /{{sa}}/... to that SA's units, round robin, \
             with the\n\
             # /{{sa}} prefix stripped and passed on as X-Forwarded-Prefix.\n\
             #",
            name = self.topology.name(),
            datacenter = if self.topology.datacenters.is_empty() {
                String::new()
            } else {
                format!(" --datacenter {}", self.datacenter.name)
            },
            listen = self.datacenter.gateway.listen,
            tls = if self.datacenter.gateway.tls_certificate.is_some() {
                " (HTTPS)"
            } else {
                ""
            },
        );
        for sa in &self.service_areas {
            let units: Vec<String> = sa
                .service_units()
                .map(|unit| format!("{} {}", unit.get_ref().name, unit.get_ref().listen))
                .collect();
            let _ = writeln!(out, "#   /{}/ -> {}", sa.name.get_ref(), units.join(", "));
        }
        let _ = writeln!(
            out,
            "#\n\
             # A unit takes traffic only while GET /health answers PASS: checked every {}, out \
             after two\n\
             # failures (a drained unit fails it), back after two passes. Writes go only to \
             units whose\n\
             # GET /health/write passes as well (not while the start gate is closed). Until the \
             first check\n\
             # passes HAProxy answers 503, so start the units first. Check with\n\
             #\n\
             #     haproxy -c -f haproxy.cfg",
            self.check_interval()
        );
    }

    fn check_interval(&self) -> String {
        let ms = self.datacenter.gateway.check_interval_ms;
        if ms.is_multiple_of(1000) {
            format!("{}s", ms / 1000)
        } else {
            format!("{ms}ms")
        }
    }

    fn global_and_defaults(&self, out: &mut String) {
        let timeout = FEED_MAX_WAIT_SECS + LONG_POLL_MARGIN_SECS;
        let _ = write!(
            out,
            "
global
    # Logs to stdout (systemd's journal, or `docker logs`).
    log stdout format raw local0 info
    # Needs about 2 x maxconn file descriptors; HAProxy raises its limit when started as root.
    maxconn 4096

defaults
    mode http
    log global
    option httplog
    option dontlognull
    # The client's address reaches the unit as X-Forwarded-For.
    option forwardfor
    # A request that failed is retried up to 3 times, each on another unit: always when the
    # connection failed (nothing was sent), and for GET and HEAD also after an empty or broken
    # answer, a timeout or a 5xx (each backend disables these retries for other methods).
    retries 3
    option redispatch
    retry-on all-retryable-errors
    timeout connect 1s
    # A request's head, and with http-buffer-request its body too (as much as one buffer, 16 KiB,
    # holds), must arrive whole within 10 s of the connection's first byte: a client dripping
    # either a byte at a time gets 408 here and never takes a unit's connection.
    timeout http-request 10s
    option http-buffer-request
    # Above the feed's longest long poll (`wait` up to {FEED_MAX_WAIT_SECS} s), so HAProxy never cuts one.
    timeout client {timeout}s
    timeout server {timeout}s
    timeout http-keep-alive 10s
    timeout queue 5s
    # Every server of every backend: checked each {interval}, out after 2 failures, in after 2.
    default-server inter {interval} fall 2 rise 2
    # A check's answer may take 3 s (without this, as long as the interval): a unit slow on a
    # busy machine is not down, and /health's own database check gives up after 2 s.
    timeout check 3s
    # A request too slow (408), no unit up (503), or a unit failed mid-request (502, 504): the
    # protocol's error format.
    http-error status 408 content-type application/json string '{{\"error\":{{\"code\":\"{too_slow}\",\"message\":\"the request did not arrive within 10 s\"}}}}'
    http-error status 502 content-type application/json string '{{\"error\":{{\"code\":\"{no_unit}\",\"message\":\"no unit of this service area answered\"}}}}'
    http-error status 503 content-type application/json string '{{\"error\":{{\"code\":\"{no_unit}\",\"message\":\"no unit of this service area is available\"}}}}'
    http-error status 504 content-type application/json string '{{\"error\":{{\"code\":\"{no_unit}\",\"message\":\"no unit of this service area answered in time\"}}}}'
",
            interval = self.check_interval(),
            no_unit = codes::NO_UNIT_AVAILABLE,
            too_slow = codes::REQUEST_TOO_SLOW,
        );
        if self.addressing == Addressing::Kubernetes {
            out.push_str(
                "    # Units are found by name in the cluster's DNS, again whenever a pod moves; \
                 HAProxy\n    # starts even while a name does not resolve yet (its server stays \
                 down).\n    default-server resolvers cluster init-addr last,libc,none\n\n\
                 resolvers cluster\n    parse-resolv-conf\n    hold valid 10s\n",
            );
        }
    }

    fn frontend(&self, out: &mut String) {
        out.push_str("\nfrontend hiscale\n");
        self.bind(out);
        self.client_bounds(out);
        out.push_str(
            "
    # /{sa}/... goes to that SA's units. Anything else names no service area: 404 in the
    # protocol's error format, JSON when the client asks for JSON, XML otherwise.
",
        );
        let names: Vec<&str> = self
            .service_areas
            .iter()
            .map(|sa| sa.name.get_ref().as_str())
            .collect();
        for name in &names {
            let _ = writeln!(out, "    acl {name} path /{name}");
            let _ = writeln!(out, "    acl {name} path_beg /{name}/");
        }
        let mut none: String = names.iter().map(|name| format!("!{name} ")).collect();
        if self.datacenter.gateway.shell.is_some() {
            out.push_str(
                "    # The GUI shell's files, from the unit that serves them (`hiscale shell`).\n",
            );
            out.push_str("    acl gui_shell path / /index.html\n");
            out.push_str("    acl gui_shell path_beg /shell/\n");
            none.push_str("!gui_shell ");
        }
        self.datacenter_health(out);
        out.push_str("    acl wants_json req.hdr(accept) -m sub json\n");
        let unknown = codes::UNKNOWN_SERVICE_AREA;
        let _ = writeln!(
            out,
            "    http-request return status 404 content-type application/json string \
             '{{\"error\":{{\"code\":\"{unknown}\",\"message\":\"the path names no \
             service area: use /{{sa}}/...\"}}}}' if {none}wants_json"
        );
        let _ = writeln!(
            out,
            "    http-request return status 404 content-type application/xml string \
             '<error><code>{unknown}</code><message>the path names no service area: \
             use /{{sa}}/...</message></error>' if {}",
            none.trim_end()
        );
        out.push('\n');
        if self.datacenter.gateway.shell.is_some() {
            out.push_str("    use_backend gui_shell if gui_shell\n");
        }
        self.write_routing(out, &names);
        for name in &names {
            let _ = writeln!(out, "    use_backend {name} if {name}");
        }
    }

    /// One `server` line per service unit of `sa`, each health-checked, `options` appended.
    fn servers(&self, out: &mut String, sa: &SaDeployment, options: &str) {
        for unit in sa.service_units() {
            let unit = unit.get_ref();
            let _ = writeln!(
                out,
                "    server {} {} check{options}",
                unit.name,
                server_address(&unit.url())
            );
        }
    }

    /// The backend for `sa`'s writing methods ([`write_backend_name`]): the same units, checked
    /// on `GET /health/write`, so a unit that refuses writes (its start gate still closed
    /// after a start, a collection restoring) gets none while it serves reads. Nothing here
    /// is retried: a write is never sent twice.
    fn write_backend(&self, out: &mut String, sa: &SaDeployment) {
        let name = sa.name.get_ref();
        let _ = writeln!(out, "\nbackend {}", write_backend_name(name));
        let _ = writeln!(
            out,
            "    # {name}'s POST, PUT, PATCH, DELETE: units whose GET /health/write passes (not \
             while the\n    # start gate is closed after a start, nor while a collection \
             restores)."
        );
        out.push_str("    balance roundrobin\n");
        out.push_str("    option httpchk GET /health/write\n");
        out.push_str("    http-check expect string PASS\n");
        out.push_str("    http-request disable-l7-retry\n");
        let _ = writeln!(
            out,
            "    http-request set-header X-Forwarded-Prefix /{name}"
        );
        let _ = writeln!(out, "    http-request replace-path ^/{name}/?(.*)$ /\\1");
        out.push_str(
            "    # A unit that answers a write 5xx (503 restoring: restarted between two checks) \
             takes no\n    # more until /health/write passes again.\n",
        );
        unit_connection_bound(out, sa);
        self.servers(out, sa, WRITE_SERVER_OPTIONS);
    }

    /// Writing methods go to the SA's write backend while it has a unit up; while none is
    /// (every unit's gate closed, the SA restoring), to the SA's backend as before, so the
    /// unit answers why (`503 restoring`) instead of HAProxy's `no-unit-available`.
    fn write_routing(&self, out: &mut String, names: &[&str]) {
        out.push_str(
            "    # Writes go to units that take them (GET /health/write passes); reads and the \
             feed to every\n    # unit up. While no unit takes writes, they go to every unit, \
             which answers why (503).\n",
        );
        out.push_str("    acl writing method POST PUT PATCH DELETE\n");
        for name in names {
            let write = write_backend_name(name);
            let _ = writeln!(
                out,
                "    use_backend {write} if {name} writing {{ nbsrv({write}) gt 0 }}"
            );
        }
    }

    /// The frontend's `bind`: plain HTTP, or HTTPS with the gateway's certificate. With TLS
    /// there is no plain listener and no redirect to HTTPS: clients of this API are programs
    /// holding bearer tokens, and one that sent its token in the clear has lost it already, so
    /// a redirect would only hide the mistake (and turn a `POST` into a `GET` on the way).
    fn bind(&self, out: &mut String) {
        let listen = self.datacenter.gateway.listen;
        match &self.datacenter.gateway.tls_certificate {
            None => {
                let _ = writeln!(out, "    bind {listen}");
            }
            Some(certificate) => {
                out.push_str(
                    "    # HTTPS only, TLS ends here: the certificate chain and its key in one PEM \
                     file. No plain\n    # listener and no redirect: a client that sent its \
                     token in the clear has lost it already.\n",
                );
                let _ = writeln!(out, "    bind {listen} ssl crt {}", certificate.get_ref());
            }
        }
    }

    /// The frontend's bounds on clients: connections at once in all (below the global
    /// `maxconn`, which leaves room for the status page and checks), and from one client
    /// address, counted in a stick table from the connection's start; a client above that bound
    /// is answered `429` once its head arrives (a head that never does is cut by
    /// `timeout http-request`).
    fn client_bounds(&self, out: &mut String) {
        let per_client = self.datacenter.gateway.max_connections_per_client;
        let refused = codes::TOO_MANY_CLIENT_CONNECTIONS;
        let _ = write!(
            out,
            "    # Connections at once, in all and from one client address (a table of the \
             addresses seen in the\n    # last minute and how many connections each holds \
             now).\n    maxconn {FRONTEND_MAXCONN}\n    stick-table type ipv6 size 100k \
             expire 60s store conn_cur\n    tcp-request connection track-sc0 src\n    \
             http-request deny status 429 content-type application/json string \
             '{{\"error\":{{\"code\":\"{refused}\",\"message\":\"too many connections \
             from this client address\"}}}}' if {{ sc0_conn_cur gt {per_client} }}\n"
        );
    }

    /// `GET /dc/health` for a global load balancer: `PASS` while every SA of this datacenter has
    /// a unit whose check passes; otherwise `503` and `FAIL` with the first SA (in file order)
    /// that has none (the demo's gateway names every such SA, one a line).
    fn datacenter_health(&self, out: &mut String) {
        out.push_str(
            "    # GET /dc/health: PASS while every SA of this datacenter has a unit up, else FAIL \
             naming\n    # the first SA without one (the first rule that matches answers).\n",
        );
        out.push_str("    acl dc_health path /dc/health\n");
        for sa in &self.service_areas {
            let name = sa.name.get_ref();
            let _ = writeln!(
                out,
                "    http-request return status 503 content-type text/plain string \
                 \"FAIL\\n{name} has no passing unit\\n\" if dc_health {{ nbsrv({name}) eq 0 }}"
            );
        }
        out.push_str(
            "    http-request return status 200 content-type text/plain string \"PASS\\n\" if \
             dc_health\n",
        );
    }
}
