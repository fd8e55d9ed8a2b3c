//! The topology file refuses what could only fail later: `hiscale check` and a unit started
//! from a topology both name the line of a copy that asks for more than its source grants,
//! and the unit never starts.

use std::path::Path;

use tests::process::run_hiscale;

/// The committed topology with shop's grant at registration narrowed to `~person`, while shop
/// still copies `~person~address.home`; and the 1-based line of shop's copy.
fn narrowed_topology() -> (String, usize) {
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/topology.toml"),
    )
    .unwrap();
    let grant = "shop = \"~person~address.home\"\n";
    assert!(committed.contains(grant), "the committed topology changed");
    let text = committed.replacen(grant, "shop = \"~person\"\n", 1);
    let shop = text.find("name = \"shop\"").unwrap();
    let copy = shop + text[shop..].find("[[sa.copies]]").unwrap();
    let line = text[..copy].matches('\n').count() + 1;
    (text, line)
}

#[test]
fn check_and_serve_refuse_a_copy_beyond_its_grant_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let (text, line) = narrowed_topology();
    let topology = dir.path().join("topology.toml");
    std::fs::write(&topology, text).unwrap();
    let secrets = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/secrets.example.toml");
    let topology = topology.to_str().unwrap();
    let expected = format!(
        "topology.toml:{line}: shop copies ~person~address.home from registration, which grants \
         shop only ~person: ~address.home lie outside"
    );

    let checked = run_hiscale(&["check", "--topology", topology]);
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert!(!checked.status.success(), "check accepted it: {stderr}");
    assert!(stderr.contains(&expected), "{stderr}");

    // The unit refuses before it opens its database or listens (the database in the committed
    // topology is on a host that does not exist here).
    let served = run_hiscale(&[
        "serve",
        "--topology",
        topology,
        "--secrets",
        secrets.to_str().unwrap(),
        "--unit",
        "shop-1",
    ]);
    let stderr = String::from_utf8_lossy(&served.stderr);
    assert!(!served.status.success(), "the unit started: {stderr}");
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn check_accepts_the_committed_topology() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/topology.toml");
    let checked = run_hiscale(&["check", "--topology", path.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(
        stdout.contains("4 service areas, 10 units, 0 warnings"),
        "{stdout}"
    );
}

/// The deployed shell (HAProxy serves no files): `hiscale shell` serves the GUI shell with its
/// policy, the plugin list and `/health` on the topology's `[gateway] shell` address, and stops
/// on SIGTERM.
#[tokio::test]
async fn the_shell_unit_serves_the_gui_on_the_topologys_address() {
    let dir = tempfile::tempdir().unwrap();
    let committed = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/topology.toml"),
    )
    .unwrap();
    let port = tests::process::free_port();
    let text = committed.replacen(
        "shell = \"127.0.0.1:8091\"",
        &format!("shell = \"127.0.0.1:{port}\""),
        1,
    );
    assert_ne!(text, committed, "the committed topology names no shell");
    let topology = dir.path().join("topology.toml");
    std::fs::write(&topology, text).unwrap();
    let mut shell = Running(
        std::process::Command::new(tests::process::hiscale_binary())
            .args(["shell", "--topology", topology.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let client = tests::demo::client();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let health = loop {
        match client.get(format!("{base}/health")).send().await {
            Ok(reply) => break reply.text().await.unwrap(),
            Err(error) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the shell never answered: {error}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!(health.trim(), "PASS");
    let index = client.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(index.status(), 200);
    let policy = index.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    let plugins: serde_json::Value = client
        .get(format!("{base}/shell/plugins.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        plugins["plugins"],
        serde_json::json!(["registration", "shop", "billing"])
    );
    tests::demo::signal(shell.0.id(), "TERM");
    let status = shell.0.wait().unwrap();
    assert!(status.success(), "the shell ended {status}");
}

/// A process killed when the test ends, however it ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
