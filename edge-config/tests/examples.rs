//! Every file in `examples/` must load and validate.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns panic on broken fixtures, as tests do

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use edge_config::{Config, DEFAULT_CONFIG, FileAccess, Protocol, TlsMode};

/// Pretends every secret and CA file exists, and records what was read.
#[derive(Default)]
struct FakeFiles {
    read: Mutex<Vec<PathBuf>>,
}

impl FileAccess for FakeFiles {
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        self.read.lock().unwrap().push(path.to_owned());
        Ok(format!(
            "secret-of-{}\n",
            path.file_name().unwrap().to_string_lossy()
        ))
    }

    fn is_file(&self, _: &Path) -> bool {
        true
    }
}

fn examples() -> BTreeMap<String, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

#[test]
fn every_example_loads_and_validates() {
    let all = examples();
    assert!(all.contains_key("minimal.toml"));
    assert!(all.contains_key("motorway-site.toml"));
    for (name, text) in &all {
        let config = Config::from_str_with_files(name, text, Vec::new(), &FakeFiles::default())
            .unwrap_or_else(|e| panic!("{name}:\n{e}"));
        assert!(config.validate().is_empty(), "{name}");
        assert!(!config.source_ids().is_empty(), "{name}");
    }
}

#[test]
fn default_config_is_minimal_example_and_loads_on_any_host() {
    assert_eq!(DEFAULT_CONFIG, examples()["minimal.toml"]);
    let config = Config::from_str_named("minimal.toml", DEFAULT_CONFIG, Vec::new()).unwrap();
    assert_eq!(config.node.edge_id, "demo-edge");
    assert!(config.uplink.is_none());
    assert_eq!(config.simulated.len(), 1);
    assert_eq!(config.aggregation.interval_s, 30);
    assert_eq!(config.http.listen.to_string(), "127.0.0.1:9108");
    assert_eq!(config.spool.dir, Path::new("/var/lib/ingest-daemon/spool"));
    assert_eq!(config.lane_assignments().len(), 2);
}

#[test]
fn motorway_site_resolves_secrets_and_lanes() {
    let files = FakeFiles::default();
    let text = &examples()["motorway-site.toml"];
    let config =
        Config::from_str_with_files("motorway-site.toml", text, Vec::new(), &files).unwrap();
    let uplink = config.uplink.as_ref().unwrap();
    assert_eq!(uplink.tls.mode, TlsMode::VerifyFull);
    assert_eq!(uplink.password().unwrap().expose(), "secret-of-db-password");
    assert_eq!(
        config.mqtt[0].password().unwrap().expose(),
        "secret-of-mqtt-password"
    );
    assert_eq!(
        config.mqtt[0].client_id(&config.node),
        "a4-km12-north-cabinet-broker"
    );
    assert_eq!(config.mqtt[0].port(), 8883);
    assert_eq!(config.node.site_id(), "A4-KM12.3-N");
    let protocols: Vec<Protocol> = config.serial.iter().map(|s| s.protocol).collect();
    assert_eq!(protocols, [Protocol::Ss125, Protocol::Ft12Tls]);
    assert_eq!(config.serial[0].poll_period().unwrap().as_millis(), 1000);
    assert_eq!(config.spool.max_bytes.bytes(), 4 << 30);
    // 3 radar + 3 loops + 3 MQTT radar + 1 MQTT ONVIF counter + 3 camera lines.
    let lanes = config.lane_assignments();
    assert_eq!(lanes.len(), 13);
    assert!(lanes.iter().all(|l| (1..=3).contains(&l.lane)));
    assert_eq!(files.read.lock().unwrap().len(), 3);
}
