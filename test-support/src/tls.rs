//! Throwaway TLS certificates made with the `openssl` command (Debian package `openssl`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A throwaway CA and a server certificate for `localhost` / 127.0.0.1 signed by it, in
/// `dir`, file names prefixed with `name`. Valid for two days.
#[derive(Debug, Clone)]
pub struct TestCerts {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCerts {
    /// Makes them; panics (naming the package) when `openssl` is missing or fails.
    pub fn new(dir: &Path, name: &str) -> Self {
        let p = |f: &str| dir.join(format!("{name}-{f}"));
        let s = |p: &PathBuf| p.display().to_string();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .output()
                .unwrap_or_else(|e| {
                    panic!("test-support: cannot run openssl ({e}); apt-get install openssl")
                });
            assert!(out.status.success(), "openssl {args:?}: {out:?}");
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test ca",
            "-keyout",
            &s(&p("ca.key")),
            "-out",
            &s(&p("ca.pem")),
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            &s(&p("server.key")),
            "-out",
            &s(&p("server.csr")),
        ]);
        std::fs::write(p("ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
            .unwrap_or_else(|e| panic!("test-support: write {}: {e}", p("ext").display()));
        openssl(&[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &s(&p("server.csr")),
            "-CA",
            &s(&p("ca.pem")),
            "-CAkey",
            &s(&p("ca.key")),
            "-CAcreateserial",
            "-out",
            &s(&p("server.pem")),
            "-extfile",
            &s(&p("ext")),
        ]);
        Self {
            ca: p("ca.pem"),
            cert: p("server.pem"),
            key: p("server.key"),
        }
    }
}
