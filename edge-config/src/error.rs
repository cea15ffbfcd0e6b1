//! Configuration errors: every problem found, each with its position.

use std::fmt;

/// One thing wrong with the configuration.
///
/// Displayed as `file:line:column: key: reason`, e.g.
/// `edge.toml:14:8: serial[1].baud: unsupported baud rate 12345 (supported: ...)`.
/// Lines and columns count from 1; columns count characters. A value that came
/// from an environment override has `file` = `env NAME` and no line or column
/// (`env INGEST__HTTP__LISTEN: http.listen: invalid socket address ...`). A
/// problem that belongs to no single key has an empty `key`, which is then
/// left out of the display.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The configuration file's name as given to the loader, or `env NAME`
    /// for a value set by an environment variable.
    pub file: String,
    /// 1-based line; 0 when the problem has no position in the file.
    pub line: usize,
    /// 1-based column in characters; 0 when `line` is 0.
    pub column: usize,
    /// The key path, e.g. `serial[1].baud` (indexes are 0-based), or empty.
    pub key: String,
    /// What is wrong and, where possible, what would be right.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.reason)
    }
}

/// The configuration could not be used; `problems` lists everything found,
/// in file order, environment problems last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Every problem found (never empty).
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    /// One problem per line, no trailing newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_forms() {
        let p = Problem {
            file: "edge.toml".into(),
            line: 14,
            column: 8,
            key: "serial[1].baud".into(),
            reason: "unsupported baud rate 12345".into(),
        };
        assert_eq!(
            p.to_string(),
            "edge.toml:14:8: serial[1].baud: unsupported baud rate 12345"
        );
        let q = Problem {
            line: 0,
            column: 0,
            key: String::new(),
            reason: "no sources".into(),
            ..p.clone()
        };
        assert_eq!(q.to_string(), "edge.toml: no sources");
        let e = ConfigError {
            problems: vec![p, q],
        };
        assert_eq!(e.to_string().lines().count(), 2);
    }
}
