//! Real HAProxy in the foreground, as the tests start it (`HISCALE_HAPROXY`, else `haproxy` on
//! the path; `scripts/test` installs it): never skipped when missing.

/// HAProxy in the foreground, stopped when dropped.
#[derive(Debug)]
pub struct Haproxy {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts HAProxy on `config` (written to a file of its own), logs discarded.
pub fn start_haproxy(config: &str) -> Haproxy {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, config).unwrap();
    let binary = std::env::var("HISCALE_HAPROXY").unwrap_or_else(|_| "haproxy".into());
    let child = std::process::Command::new(&binary)
        .arg("-db")
        .arg("-f")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "cannot start {binary} ({error}): scripts/test installs HAProxy; HAProxy tests \
                 are never skipped"
            )
        });
    Haproxy { child, _dir: dir }
}

/// Waits (30 s at most) until HAProxy passes `GET {front}/health` to a unit that answers it
/// with success: the gateway is up and has found a healthy unit of the SA at `front`.
pub async fn wait_passing(client: &reqwest::Client, front: &str) {
    crate::replication::wait_for(
        &format!("HAProxy to pass requests to {front}"),
        std::time::Duration::from_secs(30),
        async || {
            client
                .get(format!("{front}/health"))
                .send()
                .await
                .is_ok_and(|reply| reply.status().is_success())
        },
    )
    .await;
}
