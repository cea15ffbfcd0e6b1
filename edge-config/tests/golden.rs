//! Golden tests: each `tests/golden/<name>.toml` must fail with exactly the
//! text in `<name>.err`. An optional `<name>.env` holds `NAME=value` lines
//! passed as the environment. `UPDATE_GOLDEN=1 cargo test -p edge-config
//! --test golden` rewrites the `.err` files (review the diff!).

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns panic on broken fixtures, as tests do

use std::fs;
use std::path::{Path, PathBuf};

use edge_config::Config;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn read_env(path: &Path) -> Vec<(String, String)> {
    let Ok(text) = fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("NAME=value");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

#[test]
fn golden_errors_match_exactly() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut inputs: Vec<PathBuf> = fs::read_dir(golden_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 12, "expected at least 12 golden cases");
    let mut failures = Vec::new();
    for input in &inputs {
        let name = input.file_name().unwrap().to_string_lossy().into_owned();
        let text = fs::read_to_string(input).unwrap();
        let env = read_env(&input.with_extension("env"));
        let actual = match Config::from_str_named(&name, &text, env) {
            Ok(_) => "<no error>".to_owned(),
            Err(e) => e.to_string(),
        };
        let expected_path = input.with_extension("err");
        if update {
            fs::write(&expected_path, format!("{actual}\n")).unwrap();
            continue;
        }
        let expected = fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("missing {}", expected_path.display()));
        if expected.trim_end_matches('\n') != actual {
            failures.push(format!(
                "{name}\n--- expected\n{}\n--- actual\n{actual}\n",
                expected.trim_end_matches('\n')
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
}
