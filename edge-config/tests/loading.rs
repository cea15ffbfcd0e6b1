//! Loader behaviour: secrets, `*_file` indirection, environment overrides.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns panic on broken fixtures, as tests do

use std::fs;

use edge_config::{Config, ConfigError, TlsMode};

const BASE: &str = "[node]\nedge_id = \"a4-km12\"\n\n[[simulated]]\nid = \"sim\"\n";

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn load(text: &str, pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_str_named("edge.toml", text, env(pairs))
}

fn err(text: &str, pairs: &[(&str, &str)]) -> String {
    load(text, pairs).unwrap_err().to_string()
}

const SECRET: &str = "S3cr3t-Pa55w0rd";

#[test]
fn secrets_never_appear_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("db-password");
    fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let cases: Vec<(String, Vec<(&str, &str)>)> = vec![
        // Passwords embedded in URLs.
        (
            format!("{BASE}[uplink]\ndatabase_url = \"postgres://edge:{SECRET}@db/traffic\"\n"),
            vec![],
        ),
        (
            format!(
                "{BASE}[uplink]\ndatabase_url = \"postgres://edge@db/traffic?password={SECRET}\"\n"
            ),
            vec![],
        ),
        (
            format!("{BASE}[uplink]\ndatabase_url = \"postgres://edge:{SECRET}@\"\n"),
            vec![],
        ),
        (
            format!(
                "{BASE}[[mqtt]]\nid = \"b\"\nurl = \"mqtt://u:{SECRET}@broker\"\n[[mqtt.topics]]\nfilter = \"a\"\nformat = \"fiware\"\nlanes = {{ 1 = 1 }}\n"
            ),
            vec![],
        ),
        (
            format!("{BASE}[[camera]]\nid = \"c\"\nurl = \"rtsp://admin:{SECRET}@10.0.0.1/s\"\n"),
            vec![],
        ),
        // Secret keys with other problems around them.
        (
            format!(
                "{BASE}[uplink]\ndatabase_url = \"postgres://edge@db/traffic\"\npassword = \"{SECRET}\"\npassword_file = \"{}\"\nbatch_max_samples = 0\n",
                secret_file.display()
            ),
            vec![],
        ),
        (
            format!(
                "{BASE}[[camera]]\nid = \"c\"\nurl = \"rtsp://10.0.0.1/s\"\npassword = \"{SECRET}\"\npre_event_s = 1000\n"
            ),
            vec![],
        ),
        // Secrets of the wrong type or unquoted.
        (
            format!(
                "{BASE}[uplink]\ndatabase_url = \"postgres://edge@db/t\"\npassword = 8675309\n"
            ),
            vec![],
        ),
        (
            format!(
                "{BASE}[uplink]\ndatabase_url = \"postgres://edge@db/t\"\npassword = [\"{SECRET}\"]\n"
            ),
            vec![],
        ),
        (
            format!(
                "{BASE}[uplink]\ndatabase_url = \"postgres://edge@db/t\"\npassword = {SECRET}\n"
            ),
            vec![],
        ),
        // Secrets from the environment next to bad values.
        (
            BASE.to_owned(),
            vec![
                ("INGEST__UPLINK__PASSWORD", SECRET),
                ("INGEST__UPLINK__DATABASE_URL", "mysql://edge@db/t"),
            ],
        ),
        (
            BASE.to_owned(),
            vec![
                ("INGEST__UPLINK__PASWORD", SECRET),
                ("INGEST__HTTP__LISTEN", "x"),
            ],
        ),
    ];
    for (text, pairs) in &cases {
        let e = load(text, pairs).expect_err(text);
        let shown = format!("{e}\n{e:?}");
        assert!(!shown.contains(SECRET), "secret leaked:\n{shown}");
        assert!(!shown.contains("8675309"), "secret leaked:\n{shown}");
    }
}

#[test]
fn a_loaded_config_prints_no_secret() {
    let text = format!(
        "{BASE}[uplink]\ndatabase_url = \"postgres://edge@db/traffic\"\npassword = \"{SECRET}\"\n\n[[camera]]\nid = \"c\"\nurl = \"rtsp://10.0.0.1/s\"\nusername = \"u\"\npassword = \"{SECRET}\"\n"
    );
    let config = load(&text, &[]).unwrap();
    assert!(!format!("{config:?}").contains(SECRET));
    assert_eq!(
        config.uplink.as_ref().unwrap().password().unwrap().expose(),
        SECRET
    );
}

#[test]
fn password_file_is_read_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db-password");
    fs::write(&file, "pa ss\r\n").unwrap();
    let text = format!(
        "{BASE}[uplink]\ndatabase_url = \"postgres://edge@db/traffic\"\npassword_file = \"{}\"\n",
        file.display()
    );
    let config = load(&text, &[]).unwrap();
    let uplink = config.uplink.unwrap();
    assert_eq!(uplink.password().unwrap().expose(), "pa ss");
    assert!(uplink.password.is_none());
}

#[test]
fn relative_password_file_uses_credentials_directory() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("db-password"), "from-systemd\n").unwrap();
    let text = format!(
        "{BASE}[uplink]\ndatabase_url = \"postgres://edge@db/traffic\"\npassword_file = \"db-password\"\n"
    );
    let creds = dir.path().to_str().unwrap();
    let config = load(&text, &[("CREDENTIALS_DIRECTORY", creds)]).unwrap();
    assert_eq!(
        config.uplink.unwrap().password().unwrap().expose(),
        "from-systemd"
    );
    assert_eq!(
        err(&text, &[]),
        "edge.toml:8:17: uplink.password_file: relative path db-password needs $CREDENTIALS_DIRECTORY (set by systemd for LoadCredential=); otherwise give an absolute path"
    );
}

#[test]
fn empty_password_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("empty");
    fs::write(&file, "\n").unwrap();
    let text = format!(
        "{BASE}[[mqtt]]\nid = \"b\"\nurl = \"mqtt://127.0.0.1\"\nusername = \"u\"\npassword_file = \"{}\"\n[[mqtt.topics]]\nfilter = \"a/+\"\nformat = \"fiware\"\nlanes = {{ 1 = 1 }}\n",
        file.display()
    );
    assert_eq!(
        err(&text, &[]),
        format!(
            "edge.toml:10:17: mqtt[0].password_file: {} is empty",
            file.display()
        )
    );
}

#[test]
fn ca_file_must_exist_and_is_resolved() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("ca.pem"), "-----BEGIN CERTIFICATE-----\n").unwrap();
    let text = format!(
        "{BASE}[uplink]\ndatabase_url = \"postgres://edge@db/traffic\"\n[uplink.tls]\nca_file = \"ca.pem\"\n"
    );
    let creds = dir.path().to_str().unwrap();
    let config = load(&text, &[("CREDENTIALS_DIRECTORY", creds)]).unwrap();
    let tls = config.uplink.unwrap().tls;
    assert_eq!(tls.mode, TlsMode::VerifyFull);
    assert_eq!(tls.ca_file.unwrap(), dir.path().join("ca.pem"));
    let missing = text.replace("ca.pem", "/nonexistent/ca.pem");
    assert_eq!(
        err(&missing, &[]),
        "edge.toml:9:11: uplink.tls.ca_file: cannot read /nonexistent/ca.pem: file not found"
    );
}

#[test]
fn environment_overrides_file_values_and_adds_sections() {
    let text = format!("{BASE}[http]\nlisten = \"127.0.0.1:9108\"\n");
    let config = load(
        &text,
        &[
            ("INGEST__HTTP__LISTEN", "0.0.0.0:9200"),
            ("INGEST__NODE__EDGE_ID", "a4-km13"),
            ("INGEST__SPOOL__MAX_BYTES", "64MiB"),
            ("INGEST__SPOOL__SEGMENT_BYTES", "1048576"),
            ("INGEST__AGGREGATION__INTERVAL_S", "60"),
            (
                "INGEST__UPLINK__DATABASE_URL",
                "postgres://edge@db.example/traffic",
            ),
            ("INGEST__UPLINK__PASSWORD", SECRET),
            ("INGEST__UPLINK__TLS__MODE", "require"),
            ("PATH", "/usr/bin"),
        ],
    )
    .unwrap();
    assert_eq!(config.http.listen.to_string(), "0.0.0.0:9200");
    assert_eq!(config.node.edge_id, "a4-km13");
    assert_eq!(config.spool.max_bytes.bytes(), 64 << 20);
    assert_eq!(config.spool.segment_bytes.bytes(), 1 << 20);
    assert_eq!(config.aggregation.interval_s, 60);
    let uplink = config.uplink.unwrap();
    assert_eq!(uplink.database_url.host_str(), Some("db.example"));
    assert_eq!(uplink.password().unwrap().expose(), SECRET);
    assert_eq!(uplink.tls.mode, TlsMode::Require);
}

/// The packaged unit sets `INGEST__UPLINK__PASSWORD_FILE=%d/db-password` on every
/// box: it feeds a configured uplink and is ignored on a box without one.
#[test]
fn a_credential_override_alone_does_not_turn_the_uplink_on() {
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().to_str().unwrap();
    fs::write(dir.path().join("db-password"), format!("{SECRET}\n")).unwrap();
    let unit_env = [
        ("CREDENTIALS_DIRECTORY", creds),
        ("INGEST__UPLINK__PASSWORD_FILE", "db-password"),
    ];
    assert!(load(BASE, &unit_env).unwrap().uplink.is_none());
    assert!(
        load(BASE, &[("INGEST__UPLINK__PASSWORD", SECRET)])
            .unwrap()
            .uplink
            .is_none()
    );

    let text = format!("{BASE}[uplink]\ndatabase_url = \"postgres://edge@db/traffic\"\n");
    let uplink = load(&text, &unit_env).unwrap().uplink.unwrap();
    assert_eq!(uplink.password().unwrap().expose(), SECRET);
    let mut with_url = unit_env.to_vec();
    with_url.push(("INGEST__UPLINK__DATABASE_URL", "postgres://edge@db/traffic"));
    let uplink = load(BASE, &with_url).unwrap().uplink.unwrap();
    assert_eq!(uplink.password().unwrap().expose(), SECRET);
}

#[test]
fn edge_id_may_come_only_from_the_environment() {
    let text = "[[simulated]]\nid = \"sim\"\n";
    let config = load(text, &[("INGEST__NODE__EDGE_ID", "a4-km12")]).unwrap();
    assert_eq!(config.node.edge_id, "a4-km12");
    assert_eq!(config.node.site_id(), "a4-km12");
    assert_eq!(
        err(text, &[]),
        "edge.toml: node.edge_id: required key is missing (add a [node] table with edge_id)"
    );
}

#[test]
fn environment_problems_name_the_variable() {
    assert_eq!(
        err(BASE, &[("INGEST__AGGREGATION__INTERVAL_S", "45")]),
        "env INGEST__AGGREGATION__INTERVAL_S: aggregation.interval_s: interval 45 s is not allowed (allowed: 30, 60, 300)"
    );
    assert_eq!(
        err(
            BASE,
            &[
                ("INGEST__UPLINK__PASSWORD", "x"),
                ("INGEST__UPLINK__TLS__MODE", "require")
            ]
        ),
        "env INGEST__UPLINK__PASSWORD: uplink.database_url: required key is missing"
    );
    assert_eq!(
        err(BASE, &[("INGEST__SPOOL__MAX_BYTES", "lots")]),
        "env INGEST__SPOOL__MAX_BYTES: spool.max_bytes: invalid size \"lots\" (write a whole number with a unit: B, KiB, MiB, GiB, TiB, kB, MB, GB or TB)"
    );
    let text = format!("uplink = 5\n{BASE}");
    assert_eq!(
        err(&text, &[("INGEST__UPLINK__TLS__MODE", "require")]),
        "edge.toml:1:10: uplink: wrong type: expected a table, found integer 5\n\
         env INGEST__UPLINK__TLS__MODE: uplink.tls.mode: cannot override: `uplink` in the file is not a table"
    );
}

#[test]
fn load_from_path_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    fs::write(&path, format!("{BASE}[aggregation]\ninterval_s = 45\n")).unwrap();
    let e = Config::load(&path, env(&[])).unwrap_err();
    assert_eq!(e.problems.len(), 1);
    let p = &e.problems[0];
    assert_eq!(p.file, path.display().to_string());
    assert_eq!((p.line, p.column), (7, 14));
    assert_eq!(p.key, "aggregation.interval_s");

    let e = Config::load(&dir.path().join("nope.toml"), env(&[])).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("nope.toml: cannot read the configuration file: file not found"),
        "{e}"
    );

    fs::write(&path, BASE).unwrap();
    let config = Config::load(
        &path,
        std::env::vars().filter(|(k, _)| !k.starts_with("INGEST__")),
    )
    .unwrap();
    assert_eq!(config.node.edge_id, "a4-km12");
}

#[test]
fn lane_maps_in_both_forms_and_overlaps() {
    let text = "[node]\nedge_id = \"a4\"\n\n[[serial]]\nid = \"r1\"\nport = \"/dev/ttyUSB0\"\nprotocol = \"rtms_g4\"\nlanes = { 1 = 1, 2 = { lane = 2, detector_id = \"loop-b\" } }\n\n[[serial]]\nid = \"r2\"\nport = \"/dev/ttyUSB1\"\nprotocol = \"rtms_g4\"\ndetector_id = \"r1\"\nlanes = [{ device = 7, lane = 1 }]\n";
    assert_eq!(
        err(text, &[]),
        "edge.toml:15:31: serial[1].lanes[0].lane: lane 1 of detector \"r1\" is already mapped by serial[0].lanes.1"
    );
    let fixed = text.replace("detector_id = \"r1\"", "detector_id = \"r2-det\"");
    let config = load(&fixed, &[]).unwrap();
    let lanes = config.lane_assignments();
    assert_eq!(lanes.len(), 3);
    assert_eq!(lanes[1].detector_id, "loop-b");
    assert_eq!(lanes[2].detector_id, "r2-det");
}

#[test]
fn a_broken_table_does_not_hide_problems_elsewhere() {
    let text = "[node]\nedge_id = \"a4\"\n\n[[serial]]\nid = \"r1\"\nport = \"/dev/ttyUSB0\"\nprotocol = \"nope\"\nlanes = { 1 = 1 }\n\n[[serial]]\nid = \"r2\"\nport = \"/dev/ttyUSB1\"\nprotocol = \"rtms_g4\"\nbaud = 7\nlanes = { 1 = 1 }\n\n[[serial]]\nid = \"r2\"\nport = \"/dev/ttyUSB2\"\nprotocol = \"rtms_g4\"\nlanes = { 1 = 2 }\n";
    let e = load(text, &[]).unwrap_err();
    let keys: Vec<&str> = e.problems.iter().map(|p| p.key.as_str()).collect();
    // Indexes refer to the file even though serial[0] could not be read.
    assert_eq!(
        keys,
        ["serial[0].protocol", "serial[1].baud", "serial[2].id"]
    );
    assert!(
        e.problems[2]
            .reason
            .contains("already used by serial[1].id"),
        "{e}"
    );
}
