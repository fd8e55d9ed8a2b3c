//! Conventions the code base keeps, checked so they stay kept (STYLE.md habits 1 and 13).

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the workspace")
        .to_path_buf()
}

fn files_under(dir: &Path, extension: &str, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') || name == "node_modules" {
            continue;
        }
        if path.is_dir() {
            files_under(&path, extension, found);
        } else if path.extension().is_some_and(|e| e == extension) {
            found.push(path);
        }
    }
}

#[test]
fn every_rust_file_says_why_it_exists() {
    let mut files = Vec::new();
    for dir in ["framework", "services", "tests"] {
        files_under(&workspace().join(dir), "rs", &mut files);
    }
    assert!(files.len() > 40, "found only {} files", files.len());
    let missing: Vec<_> = files
        .iter()
        .filter(|file| {
            !std::fs::read_to_string(file)
                .unwrap_or_default()
                .starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! line saying why they exist: {missing:?}"
    );
}

#[test]
fn migrations_come_in_pairs_and_explain_themselves() {
    let root = workspace().join("framework/migrations");
    let names = |backend: &str| {
        let mut files = Vec::new();
        files_under(&root.join(backend), "sql", &mut files);
        let mut names: Vec<String> = files
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        names.sort();
        (files, names)
    };
    let (sqlite_files, sqlite) = names("sqlite");
    let (postgres_files, postgres) = names("postgres");
    assert_eq!(sqlite, postgres, "every migration exists for both backends");
    for file in sqlite_files.iter().chain(&postgres_files) {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        assert!(
            text.starts_with("--"),
            "{} starts without a comment",
            file.display()
        );
    }
}

/// The Rust files under `dir` (relative to the workspace) that mention `word`.
fn files_naming(dir: &str, word: &str) -> Vec<String> {
    let mut files = Vec::new();
    files_under(&workspace().join(dir), "rs", &mut files);
    files
        .iter()
        .filter(|file| {
            std::fs::read_to_string(file)
                .unwrap_or_default()
                .contains(word)
        })
        .filter_map(|file| {
            file.strip_prefix(workspace())
                .ok()
                .map(|path| path.display().to_string())
        })
        .collect()
}

/// Only `store` names sqlx and only `http` names axum in the framework, so a change of database
/// library or web framework stays inside one module; the SAs' business code names neither
/// sqlx nor the framework's internals. (The launcher's benchmark of raw PostgreSQL allocation
/// techniques is the one tool outside the rule.)
#[test]
fn storage_and_web_stay_inside_their_modules() {
    let outside = |dir: &str, word: &str, allowed: &str| -> Vec<String> {
        files_naming(dir, word)
            .into_iter()
            .filter(|file| !file.starts_with(allowed))
            .collect()
    };
    let sqlx = outside("framework/src", "sqlx", "framework/src/store");
    assert!(sqlx.is_empty(), "sqlx named outside store: {sqlx:?}");
    let axum = outside("framework/src", "axum", "framework/src/http");
    assert!(axum.is_empty(), "axum named outside http: {axum:?}");
    let mut business = Vec::new();
    for sa in ["registration", "login", "shop", "billing"] {
        business.extend(files_naming(&format!("services/{sa}/src"), "sqlx"));
    }
    assert!(business.is_empty(), "an SA names sqlx: {business:?}");
}

/// The HTTP edge and the poller share their state through `replication`, not each other: the
/// poller uses the edge's `AppState`, the edge never reaches into the poller.
#[test]
fn the_http_edge_does_not_depend_on_the_poller() {
    let cycle = files_naming("framework/src/http", "poller");
    assert!(cycle.is_empty(), "http names the poller: {cycle:?}");
}
