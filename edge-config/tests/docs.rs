//! CONFIG.md and the schema's doc comments must keep up with the schema.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns panic on broken fixtures, as tests do

use std::path::Path;

use edge_config::env::{OVERRIDABLE_KEYS, variable_for_key};
use edge_config::schema::*;
use serde::de::DeserializeOwned;

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// The TOML keys of a struct, from its `deny_unknown_fields` error message.
fn keys_of<T: DeserializeOwned>() -> Vec<String> {
    let err = toml::from_str::<T>("zz_not_a_key = 1").err().unwrap();
    let msg = err.message();
    let (_, expected) = msg.split_once("expected").unwrap();
    expected
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_owned())
        .collect()
}

/// The part of CONFIG.md from the heading that contains `marker` to the next heading.
fn section<'a>(doc: &'a str, marker: &str) -> &'a str {
    let start = doc
        .lines()
        .find(|l| l.starts_with('#') && l.contains(marker))
        .map(|l| doc.find(l).unwrap() + l.len())
        .unwrap_or_else(|| panic!("CONFIG.md has no heading with {marker}"));
    let rest = &doc[start..];
    let end = rest.find("\n#").unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn config_md_lists_every_key() {
    let doc = read("CONFIG.md");
    let tables: Vec<(&str, Vec<String>)> = vec![
        ("`[node]`", keys_of::<Node>()),
        ("`[node.location]`", keys_of::<Location>()),
        ("`[spool]`", keys_of::<Spool>()),
        ("`[uplink]`", keys_of::<Uplink>()),
        ("`[uplink.tls]`", keys_of::<UplinkTls>()),
        ("`[aggregation]`", keys_of::<Aggregation>()),
        ("`[http]`", keys_of::<Http>()),
        ("`[[serial]]`", keys_of::<SerialSource>()),
        ("`[[mqtt]]`", keys_of::<MqttSource>()),
        ("`[[mqtt.topics]]`", keys_of::<MqttTopic>()),
        ("`[[camera]]`", keys_of::<CameraSource>()),
        ("`[[simulated]]`", keys_of::<SimulatedSource>()),
    ];
    let mut missing = Vec::new();
    for (marker, keys) in &tables {
        assert!(!keys.is_empty(), "{marker}");
        let text = section(&doc, marker);
        for key in keys {
            // Nested tables are documented under their own heading.
            if matches!(key.as_str(), "location" | "tls") {
                continue;
            }
            if !text.contains(&format!("| `{key}` |")) {
                missing.push(format!("{marker} {key}"));
            }
        }
    }
    assert!(missing.is_empty(), "CONFIG.md lacks rows for: {missing:?}");
    for protocol in Protocol::ALL {
        assert!(doc.contains(&format!("| `{protocol}` |")), "{protocol}");
    }
}

#[test]
fn config_md_lists_every_override_variable() {
    let doc = read("CONFIG.md");
    for (key, _) in OVERRIDABLE_KEYS {
        let row = format!("| `{}` | `{key}` |", variable_for_key(key));
        assert!(doc.contains(&row), "CONFIG.md lacks {row}");
    }
}

#[test]
fn every_schema_field_states_its_default_or_that_it_is_required() {
    let source = read("src/schema.rs");
    let mut doc = String::new();
    let mut bad = Vec::new();
    for line in source.lines() {
        let t = line.trim_start();
        if t.starts_with("///") {
            doc.push_str(t);
            doc.push('\n');
            continue;
        }
        if t.starts_with("#[") {
            continue;
        }
        let is_field = line.starts_with("    pub ")
            && !t.starts_with("pub fn")
            && !t.starts_with("pub const")
            && t.contains(':');
        if is_field
            && !(doc.contains("Default:")
                || doc.contains("Required")
                || doc.contains("Not a TOML key"))
        {
            bad.push(t.to_owned());
        }
        doc.clear();
    }
    assert!(
        bad.is_empty(),
        "fields whose doc gives no default: {bad:#?}"
    );
}
