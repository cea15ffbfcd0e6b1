//! Loading: TOML text + environment + secret files → a checked [`Config`].
//!
//! Steps: parse the text into a span-keeping tree (`toml::de::DeTable`); put
//! environment overrides into the tree, marked with spans past the end of the
//! text so that their problems name the variable; deserialize each top-level
//! section and each `[[source]]` table on its own, so that one bad table does
//! not hide the problems of the others; run [`Config::validate`]; read
//! `*_file` secrets and check `ca_file`s. Every problem found on the way is
//! given a `file:line:column` from the tree and reported together.

use std::borrow::Cow;
use std::collections::HashSet;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::env::{self, Override};
use crate::error::{ConfigError, Problem};
use crate::path::{KeyPath, Segment};
use crate::schema::*;
use crate::secret::Secret;
use crate::suggest::closest;
use crate::validate::Issue;

/// File reads the loader needs: secret files and CA file checks. Injected so
/// that tests (and `check-config` on a laptop) need not have the box's files.
pub trait FileAccess {
    /// Reads a whole file as UTF-8.
    fn read_to_string(&self, path: &Path) -> io::Result<String>;
    /// True when `path` is an existing regular file.
    fn is_file(&self, path: &Path) -> bool;
}

/// [`FileAccess`] on the host's file system.
#[derive(Clone, Copy, Debug, Default)]
pub struct HostFiles;

impl FileAccess for HostFiles {
    fn read_to_string(&self, path: &Path) -> io::Result<String> {
        std::fs::read_to_string(path)
    }

    fn is_file(&self, path: &Path) -> bool {
        path.is_file()
    }
}

const SECTIONS: [&str; 10] = [
    "node",
    "spool",
    "clips",
    "uplink",
    "aggregation",
    "http",
    "serial",
    "mqtt",
    "camera",
    "simulated",
];

impl Config {
    /// Reads, overrides, validates and resolves the configuration file at
    /// `path`. `env` is the process environment (pass `std::env::vars()`);
    /// it supplies `INGEST__*` overrides and `CREDENTIALS_DIRECTORY`.
    /// Problems name the file as `path` is displayed.
    pub fn load(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_str_with_files(&name, &text, env, &HostFiles),
            Err(e) => Err(ConfigError {
                problems: vec![Problem {
                    file: name,
                    line: 0,
                    column: 0,
                    key: String::new(),
                    reason: format!("cannot read the configuration file: {}", io_reason(&e)),
                }],
            }),
        }
    }

    /// As [`Config::load`], for text already in memory; `name` is used as
    /// the file name in problems.
    pub fn from_str_named(
        name: &str,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Self::from_str_with_files(name, text, env, &HostFiles)
    }

    /// As [`Config::from_str_named`], reading secret and CA files through `files`.
    pub fn from_str_with_files(
        name: &str,
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
        files: &dyn FileAccess,
    ) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let mut loader = Loader {
            file: name,
            text,
            line_starts: line_starts(text),
            env_vars: Vec::new(),
            index: Vec::new(),
            problems: Vec::new(),
        };
        let result = loader.run(&env, files);
        match result {
            Some(config) if loader.problems.is_empty() => Ok(config),
            _ => {
                let mut problems = loader.problems;
                problems.sort_by(|a, b| {
                    (a.line == 0, a.line, a.column, &a.file).cmp(&(
                        b.line == 0,
                        b.line,
                        b.column,
                        &b.file,
                    ))
                });
                problems.dedup();
                Err(ConfigError { problems })
            }
        }
    }
}

fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "file not found".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        io::ErrorKind::InvalidData => "not valid UTF-8".to_owned(),
        _ => e.to_string(),
    }
}

fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// One key or array element of the document and where it is written.
struct IndexEntry {
    path: KeyPath,
    key_span: Range<usize>,
    value_span: Range<usize>,
    /// TOML type of the value ("table", "datetime", ...).
    kind: &'static str,
}

struct Loader<'a> {
    file: &'a str,
    text: &'a str,
    line_starts: Vec<usize>,
    /// Variable names of the overrides, by sentinel offset.
    env_vars: Vec<String>,
    index: Vec<IndexEntry>,
    problems: Vec<Problem>,
}

/// For each source array, the file index of each element that deserialized.
#[derive(Default)]
struct SourceOrigins {
    serial: Vec<usize>,
    mqtt: Vec<usize>,
    camera: Vec<usize>,
    simulated: Vec<usize>,
}

impl SourceOrigins {
    fn map(&self, section: &str, i: usize) -> usize {
        let v = match section {
            "serial" => &self.serial,
            "mqtt" => &self.mqtt,
            "camera" => &self.camera,
            "simulated" => &self.simulated,
            _ => return i,
        };
        v.get(i).copied().unwrap_or(i)
    }

    /// Rewrites `serial[k]...` to the file's index of element `k`.
    fn remap(&self, path: &mut KeyPath) {
        let segs = path.segments_mut();
        if let [Segment::Key(section), Segment::Index(i), ..] = segs.as_mut_slice() {
            *i = self.map(section, *i);
        }
    }

    fn remap_text(&self, reason: &str) -> String {
        // References to other sources inside a reason ("already used by
        // serial[0].id") use the same indexes and need the same rewrite.
        let mut out = String::with_capacity(reason.len());
        let mut rest = reason;
        'outer: while !rest.is_empty() {
            for section in ["serial", "mqtt", "camera", "simulated"] {
                let pat = format!("{section}[");
                if let Some(tail) = rest.strip_prefix(pat.as_str()) {
                    let digits: String = tail.chars().take_while(char::is_ascii_digit).collect();
                    if let (Ok(i), Some(after)) = (
                        digits.parse::<usize>(),
                        tail.get(digits.len()..).and_then(|t| t.strip_prefix(']')),
                    ) {
                        out.push_str(&format!("{section}[{}]", self.map(section, i)));
                        rest = after;
                        continue 'outer;
                    }
                }
            }
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                out.push(c);
            }
            rest = chars.as_str();
        }
        out
    }
}

impl<'a> Loader<'a> {
    fn env_base(&self) -> usize {
        self.text.len() + 1
    }

    fn sentinel(&self, i: usize) -> Range<usize> {
        let at = self.env_base() + i;
        at..at
    }

    /// Adds a problem at `span` for `key`.
    fn problem_at(&mut self, span: Range<usize>, key: &KeyPath, reason: String) {
        let (file, line, column) = self.position(span.start);
        self.problems.push(Problem {
            file,
            line,
            column,
            key: key.to_string(),
            reason,
        });
    }

    fn position(&self, offset: usize) -> (String, usize, usize) {
        if offset >= self.env_base() {
            let var = self
                .env_vars
                .get(offset - self.env_base())
                .cloned()
                .unwrap_or_default();
            return (format!("env {var}"), 0, 0);
        }
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self
            .line_starts
            .get(line.saturating_sub(1))
            .copied()
            .unwrap_or(0);
        let column = match self.text.get(start..offset) {
            Some(s) => s.chars().count() + 1,
            None => offset - start + 1,
        };
        (self.file.to_owned(), line.max(1), column)
    }

    /// Where `path` is written: its value, else its nearest written parent.
    fn locate(&self, path: &KeyPath) -> Option<Range<usize>> {
        let mut current = Some(path.clone());
        while let Some(p) = current {
            if let Some(e) = self.index.iter().find(|e| e.path == p) {
                return Some(e.value_span.clone());
            }
            current = p.parent();
        }
        None
    }

    /// The key path written at `span`.
    fn path_at(&self, span: &Range<usize>) -> KeyPath {
        let exact = self
            .index
            .iter()
            .filter(|e| e.key_span == *span || e.value_span == *span)
            .max_by_key(|e| e.path.segments().len());
        if let Some(e) = exact {
            return e.path.clone();
        }
        self.index
            .iter()
            .filter(|e| {
                let r = &e.value_span;
                r.start <= span.start && span.end <= r.end && r.start < r.end
            })
            .min_by_key(|e| {
                (
                    e.value_span.end - e.value_span.start,
                    usize::MAX - e.path.segments().len(),
                )
            })
            .map(|e| e.path.clone())
            .unwrap_or_default()
    }

    fn add_issue(&mut self, issue: Issue) {
        let span = self.locate(&issue.key);
        match span {
            Some(span) => self.problem_at(span, &issue.key, issue.reason),
            None => self.problems.push(Problem {
                file: self.file.to_owned(),
                line: 0,
                column: 0,
                key: issue.key.to_string(),
                reason: issue.reason,
            }),
        }
    }

    fn add_serde_error(&mut self, err: &toml::de::Error, fallback: Range<usize>) {
        let span = err.span().unwrap_or(fallback);
        let path = self.path_at(&span);
        let (key, mut reason) = translate(err.message(), path.clone());
        // toml hands date-times to serde as tables; don't call them that.
        let is_datetime = self
            .index
            .iter()
            .any(|e| e.path == path && e.kind == "datetime");
        if is_datetime {
            reason = reason.replace("found a table", "found a date-time");
        }
        self.problem_at(span, &key, reason);
    }

    /// The key of a syntax error: the indexed path at `span`, else the text
    /// at `span` (e.g. a duplicated key) under the last table header before it.
    fn syntax_key(&self, span: &Range<usize>) -> KeyPath {
        let path = self.path_at(span);
        if !path.is_root() {
            return path;
        }
        let text = self.text.get(span.clone()).unwrap_or_default().trim();
        if text.is_empty() || text.len() > 64 || text.contains(['\n', '=', '[', ']', '"']) {
            return path;
        }
        let table = self
            .index
            .iter()
            .filter(|e| e.kind == "table" && e.value_span.start <= span.start)
            .filter(|e| {
                self.text
                    .get(e.value_span.clone())
                    .is_some_and(|t| t.starts_with('['))
            })
            .max_by_key(|e| e.value_span.start)
            .map(|e| e.path.clone())
            .unwrap_or_default();
        table.key(text)
    }

    fn run(&mut self, env: &[(String, String)], files: &dyn FileAccess) -> Option<Config> {
        let (overrides, env_problems) = env::parse_overrides(env);
        for p in env_problems {
            self.problems.push(Problem {
                file: format!("env {}", p.var),
                line: 0,
                column: 0,
                key: p.key,
                reason: p.reason,
            });
        }

        let (root, syntax) = DeTable::parse_recoverable(self.text);
        let root_span = root.span();
        let mut root = root.into_inner();
        if let Some(first) = syntax
            .iter()
            .min_by_key(|e| e.span().map_or(0, |s| s.start))
        {
            // Later errors are mostly the recovery's echoes of the first.
            index_table(&root, &KeyPath::root(), &mut self.index);
            let span = first.span().unwrap_or(0..0);
            let path = self.syntax_key(&span);
            self.problem_at(span, &path, format!("TOML syntax: {}", first.message()));
            return None;
        }

        self.apply_overrides(&mut root, overrides);
        index_table(&root, &KeyPath::root(), &mut self.index);

        let mut failed: HashSet<&'static str> = HashSet::new();
        let mut source_failed = false;
        let mut origins = SourceOrigins::default();
        let mut node = None;
        let mut config = Config {
            node: Node {
                edge_id: String::new(),
                site_id: None,
                description: None,
                location: None,
                lane_numbering: LaneNumbering::default(),
            },
            spool: Spool::default(),
            uplink: None,
            aggregation: Aggregation::default(),
            http: Http::default(),
            clips: Clips::default(),
            serial: Vec::new(),
            mqtt: Vec::new(),
            camera: Vec::new(),
            simulated: Vec::new(),
        };

        for (key, value) in root {
            let name = key.get_ref().as_ref();
            let Some(section) = SECTIONS.iter().copied().find(|s| *s == name) else {
                let path = KeyPath::root().key(name);
                let hint = match closest(name, SECTIONS) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("valid tables: {}", SECTIONS.join(", ")),
                };
                let reason = match value.get_ref() {
                    DeValue::Table(_) | DeValue::Array(_) => {
                        format!("unknown table `{name}` ({hint})")
                    }
                    _ => format!(
                        "unknown top-level key `{name}`: keys belong in a table such as [node] ({hint})"
                    ),
                };
                self.problem_at(key.span(), &path, reason);
                continue;
            };
            let ok = match section {
                "node" => self.single(section, value, &mut node),
                "spool" => self.single_into(section, value, &mut config.spool),
                "aggregation" => self.single_into(section, value, &mut config.aggregation),
                "http" => self.single_into(section, value, &mut config.http),
                "clips" => self.single_into(section, value, &mut config.clips),
                "uplink" => self.single(section, value, &mut config.uplink),
                "serial" => self.array(section, value, &mut config.serial, &mut origins.serial),
                "mqtt" => self.array(section, value, &mut config.mqtt, &mut origins.mqtt),
                "camera" => self.array(section, value, &mut config.camera, &mut origins.camera),
                _ => self.array(
                    section,
                    value,
                    &mut config.simulated,
                    &mut origins.simulated,
                ),
            };
            if !ok {
                if matches!(section, "serial" | "mqtt" | "camera" | "simulated") {
                    // Its other tables were kept (with their file indexes).
                    source_failed = true;
                } else {
                    failed.insert(section);
                }
            }
        }
        match node {
            Some(node) => config.node = node,
            None if !failed.contains("node") => {
                failed.insert("node");
                self.problems.push(Problem {
                    file: self.file.to_owned(),
                    line: 0,
                    column: 0,
                    key: "node.edge_id".to_owned(),
                    reason: "required key is missing (add a [node] table with edge_id)".to_owned(),
                });
            }
            None => {}
        }

        let _ = root_span;
        for mut issue in config.validate() {
            origins.remap(&mut issue.key);
            let top = match issue.key.segments().first() {
                Some(Segment::Key(k)) => k.as_str(),
                _ => "",
            };
            // Problems of a table that did not parse are unreliable; a
            // missing-sources problem is wrong if a source did not parse.
            if failed.contains(top) || (top.is_empty() && source_failed) {
                continue;
            }
            issue.reason = origins.remap_text(&issue.reason);
            self.add_issue(issue);
        }

        self.resolve_files(
            &mut config,
            &origins,
            env::credentials_directory(env),
            files,
        );
        Some(config)
    }

    fn apply_overrides<'e>(&mut self, root: &mut DeTable<'e>, overrides: Vec<Override<'e>>) {
        // The packaged unit sets INGEST__UPLINK__PASSWORD_FILE on every box, with an
        // uplink or without: a credential alone must not turn the uplink on.
        let uplink_wanted = root.contains_key("uplink")
            || overrides.iter().any(|o| {
                o.key.starts_with("uplink.") && !env::UPLINK_CREDENTIAL_KEYS.contains(&o.key)
            });
        for o in overrides {
            if !uplink_wanted && env::UPLINK_CREDENTIAL_KEYS.contains(&o.key) {
                continue;
            }
            let parts: Vec<&'static str> = o.key.split('.').collect();
            let Some((last, parents)) = parts.split_last() else {
                continue;
            };
            // One sentinel per created table and one for the value, so that a
            // problem of a created table is not taken for one of the value.
            let spans: Vec<Range<usize>> = parts
                .iter()
                .map(|_| {
                    self.env_vars.push(o.var.to_owned());
                    self.sentinel(self.env_vars.len() - 1)
                })
                .collect();
            let span = spans.last().cloned().unwrap_or_default();
            let table = match descend(root, parents, &spans) {
                Ok(table) => table,
                Err(depth) => {
                    let path = KeyPath::from_segments(
                        parents
                            .iter()
                            .take(depth + 1)
                            .map(|p| Segment::Key((*p).to_owned()))
                            .collect(),
                    );
                    self.problems.push(Problem {
                        file: format!("env {}", o.var),
                        line: 0,
                        column: 0,
                        key: o.key.to_owned(),
                        reason: format!("cannot override: `{path}` in the file is not a table"),
                    });
                    continue;
                }
            };
            table.insert(
                Spanned::new(span.clone(), Cow::Borrowed(*last)),
                Spanned::new(span, o.value),
            );
        }
    }

    /// Deserializes a singleton section into `slot`.
    fn single<T: for<'de> Deserialize<'de>>(
        &mut self,
        section: &str,
        value: Spanned<DeValue<'_>>,
        slot: &mut Option<T>,
    ) -> bool {
        let span = value.span();
        if let DeValue::Array(_) = value.get_ref() {
            // serde would read an array as a struct's fields in order and
            // complain about the first one; say what is really wrong.
            let path = KeyPath::root().key(section);
            let name = section;
            let header_form = self
                .text
                .get(span.clone())
                .is_some_and(|t| t.starts_with("[["));
            let reason = if header_form {
                format!("[[{name}]] declares an array of tables; write [{name}] (single brackets)")
            } else {
                "wrong type: expected a table, found an array".to_owned()
            };
            self.problem_at(span, &path, reason);
            return false;
        }
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(v) => {
                *slot = Some(v);
                true
            }
            Err(e) => {
                self.add_serde_error(&e, span);
                false
            }
        }
    }

    fn single_into<T: for<'de> Deserialize<'de>>(
        &mut self,
        section: &str,
        value: Spanned<DeValue<'_>>,
        slot: &mut T,
    ) -> bool {
        let mut tmp = None;
        let ok = self.single(section, value, &mut tmp);
        if let Some(v) = tmp {
            *slot = v;
        }
        ok
    }

    /// Deserializes each table of a `[[section]]` array on its own.
    fn array<T: for<'de> Deserialize<'de>>(
        &mut self,
        section: &str,
        value: Spanned<DeValue<'_>>,
        out: &mut Vec<T>,
        origins: &mut Vec<usize>,
    ) -> bool {
        let span = value.span();
        let path = KeyPath::root().key(section);
        let items = match value.into_inner() {
            DeValue::Array(items) => items,
            DeValue::Table(_) => {
                self.problem_at(
                    span,
                    &path,
                    format!(
                        "[{section}] declares a single table; declare each source with [[{section}]] (double brackets)"
                    ),
                );
                return false;
            }
            other => {
                self.problem_at(
                    span,
                    &path,
                    format!(
                        "wrong type: expected an array of tables ([[{section}]]), found {}",
                        article(other.type_str())
                    ),
                );
                return false;
            }
        };
        let mut ok = true;
        for (i, item) in items.into_iter().enumerate() {
            let item_span = item.span();
            match T::deserialize(ValueDeserializer::from(item)) {
                Ok(v) => {
                    out.push(v);
                    origins.push(i);
                }
                Err(e) => {
                    self.add_serde_error(&e, item_span);
                    ok = false;
                }
            }
        }
        ok
    }

    fn resolve_files(
        &mut self,
        config: &mut Config,
        origins: &SourceOrigins,
        credentials: Option<&str>,
        files: &dyn FileAccess,
    ) {
        let root = KeyPath::root();
        let mut jobs: Vec<(KeyPath, Option<&PathBuf>, &mut Option<Secret>)> = Vec::new();
        // Certificate and key files: resolved and checked to exist (read by the daemon).
        let mut cas: Vec<(KeyPath, &mut Option<PathBuf>)> = Vec::new();
        if let Some(u) = config.uplink.as_mut() {
            let base = root.key("uplink");
            jobs.push((
                base.key("password_file"),
                u.password_file.as_ref(),
                &mut u.password_from_file,
            ));
            cas.push((base.key("tls").key("ca_file"), &mut u.tls.ca_file));
        }
        for (i, m) in config.mqtt.iter_mut().enumerate() {
            let base = root.key("mqtt").index(origins.map("mqtt", i));
            jobs.push((
                base.key("password_file"),
                m.password_file.as_ref(),
                &mut m.password_from_file,
            ));
            cas.push((base.key("ca_file"), &mut m.ca_file));
            cas.push((base.key("client_cert_file"), &mut m.client_cert_file));
            cas.push((base.key("client_key_file"), &mut m.client_key_file));
        }
        for (i, c) in config.camera.iter_mut().enumerate() {
            let base = root.key("camera").index(origins.map("camera", i));
            jobs.push((
                base.key("password_file"),
                c.password_file.as_ref(),
                &mut c.password_from_file,
            ));
        }
        let mut issues = Vec::new();
        for (key, file, secret) in jobs {
            let Some(file) = file else { continue };
            match resolve_path(file, credentials).and_then(|p| read_secret(&p, files)) {
                Ok(value) => *secret = Some(value),
                Err(reason) => issues.push(Issue { key, reason }),
            }
        }
        for (key, ca) in cas {
            let Some(file) = ca.as_ref() else { continue };
            match resolve_path(file, credentials) {
                Ok(p) if files.is_file(&p) => *ca = Some(p),
                Ok(p) => issues.push(Issue {
                    key,
                    reason: format!("cannot read {}: file not found", p.display()),
                }),
                Err(reason) => issues.push(Issue { key, reason }),
            }
        }
        for issue in issues {
            self.add_issue(issue);
        }
    }
}

/// The table at `parents` under `table`, created where missing; `Err(depth)`
/// when the part at `depth` exists but is not a table.
fn descend<'t, 'e>(
    table: &'t mut DeTable<'e>,
    parents: &[&'static str],
    spans: &[Range<usize>],
) -> Result<&'t mut DeTable<'e>, usize> {
    let (Some((part, rest)), Some((span, rest_spans))) =
        (parents.split_first(), spans.split_first())
    else {
        return Ok(table);
    };
    if !table.contains_key(*part) {
        table.insert(
            Spanned::new(span.clone(), Cow::Borrowed(*part)),
            Spanned::new(span.clone(), DeValue::Table(DeTable::new())),
        );
    }
    match table.get_mut(*part).map(Spanned::get_mut) {
        Some(DeValue::Table(t)) => descend(t, rest, rest_spans).map_err(|d| d + 1),
        _ => Err(0),
    }
}

/// Absolute paths as they are; relative ones under `$CREDENTIALS_DIRECTORY`.
fn resolve_path(path: &Path, credentials: Option<&str>) -> Result<PathBuf, String> {
    if path.is_absolute() {
        return Ok(path.to_owned());
    }
    match credentials {
        Some(dir) => Ok(Path::new(dir).join(path)),
        None => Err(format!(
            "relative path {} needs $CREDENTIALS_DIRECTORY (set by systemd for LoadCredential=); otherwise give an absolute path",
            path.display()
        )),
    }
}

/// Reads a secret file; messages name the path, never the content.
fn read_secret(path: &Path, files: &dyn FileAccess) -> Result<Secret, String> {
    let text = files
        .read_to_string(path)
        .map_err(|e| format!("cannot read {}: {}", path.display(), io_reason(&e)))?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret::new(value))
}

fn index_table(table: &DeTable<'_>, base: &KeyPath, out: &mut Vec<IndexEntry>) {
    for (key, value) in table.iter() {
        let path = base.key(key.get_ref());
        out.push(IndexEntry {
            path: path.clone(),
            key_span: key.span(),
            value_span: value.span(),
            kind: value.get_ref().type_str(),
        });
        index_value(value.get_ref(), &path, out);
    }
}

fn index_value(value: &DeValue<'_>, path: &KeyPath, out: &mut Vec<IndexEntry>) {
    match value {
        DeValue::Table(t) => index_table(t, path, out),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let p = path.index(i);
                out.push(IndexEntry {
                    path: p.clone(),
                    key_span: item.span(),
                    value_span: item.span(),
                    kind: item.get_ref().type_str(),
                });
                index_value(item.get_ref(), &p, out);
            }
        }
        _ => {}
    }
}

fn article(type_name: &str) -> String {
    match type_name {
        "array" | "integer" => format!("an {type_name}"),
        other => format!("a {other}"),
    }
}

/// Splits "`a`, `b`, `c`" into names.
fn backticked(list: &str) -> Vec<&str> {
    list.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect()
}

/// serde's "expected" phrases in words for people.
fn expected_words(expected: &str) -> String {
    match expected {
        "u8" => "an integer from 0 to 255".to_owned(),
        "u16" => "an integer from 0 to 65535".to_owned(),
        "u32" => "an integer from 0 to 4294967295".to_owned(),
        "u64" | "usize" => "a non-negative integer".to_owned(),
        "i8" | "i16" | "i32" | "i64" => "an integer".to_owned(),
        "f32" | "f64" => "a number".to_owned(),
        "a sequence" => "an array".to_owned(),
        "a map" => "a table".to_owned(),
        "a borrowed string" => "a string".to_owned(),
        "path string" => "a path (string)".to_owned(),
        s if s.starts_with("struct ") => "a table".to_owned(),
        s if s.starts_with("enum ") => "a string".to_owned(),
        s => s.to_owned(),
    }
}

/// The kind of value serde expected, without ranges.
fn type_words(expected: &str) -> String {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" => {
            "an integer".to_owned()
        }
        other => expected_words(other),
    }
}

/// serde's "found" phrases ("integer `5`", "sequence") in words for people.
fn found_words(found: &str) -> String {
    let found = found
        .replace('`', "")
        .replace(" as i128", "")
        .replace(" as u128", "");
    match found.as_str() {
        "sequence" => "an array".to_owned(),
        "map" => "a table".to_owned(),
        _ => found
            .strip_prefix("floating point ")
            .map(|v| format!("float {v}"))
            .unwrap_or(found),
    }
}

/// Turns a serde/toml message into (key, reason) in the crate's words.
fn translate(message: &str, path: KeyPath) -> (KeyPath, String) {
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.trim_end_matches('`');
        return (path.key(field), "required key is missing".to_owned());
    }
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let valid = backticked(expected);
        let hint = match closest(field, valid.iter().copied()) {
            Some(best) => format!("did you mean `{best}`?"),
            None if valid.is_empty() => "this table has no keys".to_owned(),
            None => format!("valid keys: {}", valid.join(", ")),
        };
        return (path, format!("unknown key `{field}` ({hint})"));
    }
    if let Some(rest) = message.strip_prefix("unknown variant `") {
        let (value, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let valid = backticked(expected);
        let mut reason = format!(
            "unknown value {value:?}; expected one of: {}",
            valid.join(", ")
        );
        if let Some(best) = closest(value, valid.iter().copied()) {
            reason.push_str(&format!(" (did you mean {best:?}?)"));
        }
        return (path, reason);
    }
    if let Some(rest) = message.strip_prefix("invalid type: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            return (
                path,
                format!(
                    "wrong type: expected {}, found {}",
                    type_words(expected),
                    found_words(found)
                ),
            );
        }
    }
    if let Some(rest) = message.strip_prefix("invalid value: ") {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            return (
                path,
                format!(
                    "invalid value {}: expected {}",
                    found_words(found).trim_start_matches("integer "),
                    expected_words(expected)
                ),
            );
        }
    }
    (path, message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_serde_messages() {
        let p = KeyPath::root().key("serial").index(0);
        let (k, r) = translate("missing field `port`", p.clone());
        assert_eq!(
            (k.to_string(), r.as_str()),
            ("serial[0].port".into(), "required key is missing")
        );
        let (_, r) = translate(
            "unknown field `baudd`, expected one of `id`, `baud`",
            p.key("baudd"),
        );
        assert_eq!(r, "unknown key `baudd` (did you mean `baud`?)");
        let (_, r) = translate("invalid type: string \"9600\", expected u32", p.key("baud"));
        assert_eq!(r, "wrong type: expected an integer, found string \"9600\"");
        let (_, r) = translate(
            "invalid value: integer `300`, expected u8",
            p.key("data_bits"),
        );
        assert_eq!(r, "invalid value 300: expected an integer from 0 to 255");
    }

    #[test]
    fn positions_count_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        let l = Loader {
            file: "f",
            text,
            line_starts: line_starts(text),
            env_vars: vec!["INGEST__X".into()],
            index: Vec::new(),
            problems: Vec::new(),
        };
        assert_eq!(l.position(0), ("f".into(), 1, 1));
        let at = text.find('"').unwrap();
        assert_eq!(l.position(at), ("f".into(), 2, 6));
        assert_eq!(l.position(text.len() + 1), ("env INGEST__X".into(), 0, 0));
    }

    #[test]
    fn remaps_source_indexes_in_text() {
        let o = SourceOrigins {
            serial: vec![1, 2],
            ..SourceOrigins::default()
        };
        assert_eq!(
            o.remap_text("used by serial[0].id and mqtt[0]"),
            "used by serial[1].id and mqtt[0]"
        );
    }
}
