//! SIGHUP: what a new configuration changes, decided by comparing it with the running one.
//!
//! Sources are matched by id across all kinds. A source whose table is equal in both keeps
//! running with its counters; a changed one is restarted (new session, new counters); a new
//! id is started; a missing id is stopped. Only `[[simulated]]` sources run in this build,
//! so only they are applied live.
//!
//! Everything outside the source tables (`[node]`, `[spool]`, `[aggregation]`, `[http]`,
//! `[uplink]`) is read once at start: a change there is logged as needing a restart and
//! otherwise ignored (the spool stays open, the HTTP endpoint keeps its address). A changed
//! source keeps its detector's lane map from the first time the detector was seen (the
//! aggregator's bins depend on it): a different lane count needs a restart too.

use edge_config::Config;

/// One source's table, whatever its kind.
#[derive(Debug, Clone, PartialEq)]
enum SourceTable<'a> {
    Serial(&'a edge_config::SerialSource),
    Mqtt(&'a edge_config::MqttSource),
    Camera(&'a edge_config::CameraSource),
    Simulated(&'a edge_config::SimulatedSource),
}

fn tables(config: &Config) -> Vec<(&str, SourceTable<'_>)> {
    let mut out: Vec<(&str, SourceTable<'_>)> = Vec::new();
    out.extend(
        config
            .serial
            .iter()
            .map(|s| (s.id.as_str(), SourceTable::Serial(s))),
    );
    out.extend(
        config
            .mqtt
            .iter()
            .map(|s| (s.id.as_str(), SourceTable::Mqtt(s))),
    );
    out.extend(
        config
            .camera
            .iter()
            .map(|s| (s.id.as_str(), SourceTable::Camera(s))),
    );
    out.extend(
        config
            .simulated
            .iter()
            .map(|s| (s.id.as_str(), SourceTable::Simulated(s))),
    );
    out
}

/// What a reload does, by source id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadPlan {
    /// Unchanged: keep running, counters kept.
    pub keep: Vec<String>,
    /// Changed: stop, then start with the new table.
    pub restart: Vec<String>,
    /// New ids.
    pub start: Vec<String>,
    /// Ids no longer configured.
    pub stop: Vec<String>,
    /// Sections outside the sources that changed: they take effect at the next restart.
    pub needs_restart: Vec<&'static str>,
}

impl ReloadPlan {
    /// True when the new configuration changes nothing.
    pub fn is_noop(&self) -> bool {
        self.restart.is_empty()
            && self.start.is_empty()
            && self.stop.is_empty()
            && self.needs_restart.is_empty()
    }
}

/// Compares the running configuration with a new one.
pub fn plan(old: &Config, new: &Config) -> ReloadPlan {
    let mut p = ReloadPlan::default();
    let before = tables(old);
    let after = tables(new);
    for (id, table) in &after {
        match before.iter().find(|(i, _)| i == id) {
            Some((_, t)) if t == table => p.keep.push((*id).to_owned()),
            Some(_) => p.restart.push((*id).to_owned()),
            None => p.start.push((*id).to_owned()),
        }
    }
    for (id, _) in &before {
        if !after.iter().any(|(i, _)| i == id) {
            p.stop.push((*id).to_owned());
        }
    }
    let sections: [(&'static str, bool); 5] = [
        ("node", old.node != new.node),
        ("spool", old.spool != new.spool),
        ("aggregation", old.aggregation != new.aggregation),
        ("http", old.http != new.http),
        ("uplink", old.uplink != new.uplink),
    ];
    p.needs_restart = sections
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(name, _)| name)
        .collect();
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_str_with_files("t.toml", text, Vec::new(), &edge_config::HostFiles).unwrap()
    }

    const BASE: &str = "[node]\nedge_id = \"box-1\"\n";

    #[test]
    fn sources_are_diffed_by_id_and_table() {
        let old = config(&format!(
            "{BASE}[[simulated]]\nid = \"a\"\n[[simulated]]\nid = \"b\"\n[[simulated]]\nid = \"c\"\n"
        ));
        let new = config(&format!(
            "{BASE}[[simulated]]\nid = \"a\"\n[[simulated]]\nid = \"b\"\nseed = 9\n\
             [[simulated]]\nid = \"d\"\n"
        ));
        let p = plan(&old, &new);
        assert_eq!(p.keep, ["a"]);
        assert_eq!(p.restart, ["b"]);
        assert_eq!(p.start, ["d"]);
        assert_eq!(p.stop, ["c"]);
        assert!(p.needs_restart.is_empty());
        assert!(!p.is_noop());
        assert!(plan(&old, &old).is_noop());
    }

    #[test]
    fn other_sections_need_a_restart() {
        let old = config(&format!("{BASE}[[simulated]]\nid = \"a\"\n"));
        let new = config(&format!(
            "{BASE}[http]\nlisten = \"127.0.0.1:9999\"\n[aggregation]\ninterval_s = 60\n\
             [[simulated]]\nid = \"a\"\n"
        ));
        let p = plan(&old, &new);
        assert_eq!(p.keep, ["a"]);
        assert_eq!(p.needs_restart, ["aggregation", "http"]);
    }
}
