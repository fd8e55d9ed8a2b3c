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
