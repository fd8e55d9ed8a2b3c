//! Conventions the code base keeps, checked so they stay kept (STYLE.md habits 1 and 13, and
//! error codes named once and listed in the wire protocol, `docs/protocol.md`).

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

/// The error codes defined in `file` (relative to the workspace), `(CONSTANT, "code")`, read
/// from its source (`pub const NAME: &str = "code";`, one a line, as rustfmt keeps them).
fn codes_in(file: &str) -> Vec<(String, String)> {
    let path = workspace().join(file);
    let source = std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{file} exists"));
    source
        .lines()
        .filter_map(|line| {
            let (name, value) = line.strip_prefix("pub const ")?.split_once(": &str = \"")?;
            Some((name.to_owned(), value.strip_suffix("\";")?.to_owned()))
        })
        .collect()
}

/// Every error code the code defines, `(where, CONSTANT, "code")`: the framework's
/// (`hiscale::codes`) and each service area's own `codes` module.
fn defined_codes() -> Vec<(String, String, String)> {
    let mut files = vec!["framework/src/codes.rs".to_owned()];
    let mut services: Vec<String> = std::fs::read_dir(workspace().join("services"))
        .expect("services/ exists")
        .flatten()
        .map(|entry| {
            format!(
                "services/{}/src/codes.rs",
                entry.file_name().to_string_lossy()
            )
        })
        .filter(|file| workspace().join(file).is_file())
        .collect();
    services.sort();
    assert!(
        services.len() >= 4,
        "found only {} service codes modules: {services:?}",
        services.len()
    );
    files.extend(services);
    let mut codes = Vec::new();
    for file in &files {
        let found = codes_in(file);
        assert!(!found.is_empty(), "{file} defines no code");
        codes.extend(
            found
                .into_iter()
                .map(|(name, code)| (file.clone(), name, code)),
        );
    }
    let framework = codes
        .iter()
        .filter(|(file, _, _)| file.starts_with("framework/"))
        .count();
    assert!(framework > 40, "found only {framework} framework codes");
    codes
}

/// The codes in `docs/protocol.md`'s error-code table: the first cell, in backticks, of every
/// table row under the heading `## Error codes`, up to the next `## ` heading.
fn documented_codes() -> Vec<String> {
    let text = std::fs::read_to_string(workspace().join("docs/protocol.md"))
        .expect("docs/protocol.md exists");
    let heading = "\n## Error codes\n";
    let start = text
        .find(heading)
        .map(|at| at + heading.len())
        .expect("docs/protocol.md has the section '## Error codes'");
    let section = text[start..].split("\n## ").next().unwrap_or_default();
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|row| row.split_once('`').map(|(code, _)| code.to_owned()))
        .collect()
}

#[test]
fn error_codes_are_documented_in_the_protocol() {
    let defined = defined_codes();
    let documented = documented_codes();
    assert!(
        documented.len() > 40,
        "found only {} codes in docs/protocol.md's table",
        documented.len()
    );
    let mut findings = Vec::new();
    for (file, name, code) in &defined {
        if !documented.contains(code) {
            findings.push(format!(
                "{file}: {name} = {code:?} is not in docs/protocol.md's error-code table"
            ));
        }
    }
    for (at, code) in documented.iter().enumerate() {
        if !defined.iter().any(|(_, _, known)| known == code) {
            findings.push(format!(
                "docs/protocol.md's table lists {code:?}, which no codes.rs defines"
            ));
        }
        if documented[..at].contains(code) {
            findings.push(format!("docs/protocol.md's table lists {code:?} twice"));
        }
    }
    let mut seen: Vec<&str> = Vec::new();
    for (file, name, code) in &defined {
        if seen.contains(&code.as_str()) {
            findings.push(format!("{file}: {name} = {code:?} is defined twice"));
        }
        seen.push(code);
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}

/// Calls that take an error code; a code argument that opens with `"` is a literal.
const CODE_TAKERS: &[&str] = &[
    "ApiError::new(",
    "ApiError::bad_request(",
    "ApiError::not_found(",
    "ApiError::forbidden(",
    "ApiError::unavailable(",
    "Self::new(",
    "Self::bad_request(",
    "Self::not_found(",
    "Self::forbidden(",
    "Self::unavailable(",
    "BadBody::new(",
    "Invalid::new(",
];

/// Each call in `source` that passes its error code as a literal, as it reads without spaces.
fn literal_codes(source: &str) -> Vec<String> {
    let compact: String = source
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .flat_map(|line| line.chars().filter(|c| !c.is_whitespace()))
        .collect();
    let mut found = Vec::new();
    for taker in CODE_TAKERS {
        for (at, _) in compact.match_indices(taker) {
            let mut argument = &compact[at + taker.len()..];
            // `new` takes the status first; the code is the next argument.
            if argument.starts_with("StatusCode::") {
                argument = argument.split_once(',').map_or("", |(_, rest)| rest);
            }
            if argument.starts_with('"') {
                let code_argument: String = argument.chars().take(40).collect();
                found.push(format!("{taker}…{code_argument}"));
            }
        }
    }
    found
}

#[test]
fn error_codes_are_named_not_spelled() {
    let mut files = Vec::new();
    for dir in ["framework/src", "services"] {
        files_under(&workspace().join(dir), "rs", &mut files);
    }
    let mut findings = Vec::new();
    for file in files.iter().filter(|file| !file.ends_with("codes.rs")) {
        let source = std::fs::read_to_string(file).unwrap_or_default();
        for call in literal_codes(&source) {
            let shown = file.strip_prefix(workspace()).unwrap_or(file);
            findings.push(format!("{}: {call}…", shown.display()));
        }
    }
    assert!(
        findings.is_empty(),
        "error codes written as literals; name them in a codes module \
         (framework/src/codes.rs, or the SA's own):\n{}",
        findings.join("\n")
    );
}

#[test]
fn the_literal_scan_sees_literals() {
    let check = |source: &str, expected: usize| {
        assert_eq!(literal_codes(source).len(), expected, "{source}");
    };
    check(r#"ApiError::bad_request("bad-query", "…")"#, 1);
    check(
        "ApiError::new(\n    StatusCode::GONE,\n    \"resync-required\",\n",
        1,
    );
    check(r#"Invalid::new("invalid-iban", "…")"#, 1);
    check(r#"ApiError::bad_request(codes::BAD_QUERY, "…")"#, 0);
    check(
        "ApiError::new(StatusCode::GONE, codes::RESYNC_REQUIRED, message)",
        0,
    );
    check(r#"/// ApiError::bad_request("bad-query", "…")"#, 0);
}

/// The Rust files under `dir` (relative to the workspace) whose code (comments aside) names
/// `word`.
fn files_naming(dir: &str, word: &str) -> Vec<String> {
    let mut files = Vec::new();
    files_under(&workspace().join(dir), "rs", &mut files);
    files
        .iter()
        .filter(|file| {
            std::fs::read_to_string(file)
                .unwrap_or_default()
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .any(|line| line.contains(word))
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

/// Batch jobs run on the store and the SA's declaration, not through the HTTP edge (which
/// starts them and, in the test kit, runs a round of them): no cycle between the two.
#[test]
fn batch_jobs_do_not_depend_on_the_http_edge() {
    for file in ["framework/src/batch.rs", "framework/src/business.rs"] {
        let text = std::fs::read_to_string(workspace().join(file)).unwrap();
        assert!(text.contains("use crate::"), "{file} was not read");
        let naming: Vec<&str> = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .filter(|line| line.contains("crate::http") || line.contains("axum"))
            .collect();
        assert!(naming.is_empty(), "{file} names the HTTP edge: {naming:?}");
    }
}
