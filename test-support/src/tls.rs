//! Throwaway TLS certificates (made with the `openssl` command, Debian package `openssl`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Paths of a throwaway CA and a server certificate it signed.
#[derive(Debug, Clone)]
pub struct TestCerts {
    /// The CA certificate (PEM): what clients trust.
    pub ca: PathBuf,
    /// The server certificate (PEM), for `localhost` and 127.0.0.1, valid for two days.
    pub cert: PathBuf,
    /// The server's private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// Makes a CA and a server certificate signed by it in `dir`, file names prefixed with
/// `name-`. Panics (naming the package) when `openssl` fails or is missing.
pub fn make_certs(dir: &Path, name: &str) -> TestCerts {
    let p = |f: &str| dir.join(format!("{name}-{f}"));
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("test-support: cannot run openssl (apt-get install openssl): {e}")
            });
        assert!(
            out.status.success(),
            "test-support: openssl {args:?}: {out:?}"
        );
    };
    let s = |p: &PathBuf| p.display().to_string();
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
    let ext = p("ext");
    std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
        .unwrap_or_else(|e| panic!("test-support: writing {}: {e}", ext.display()));
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
        &s(&ext),
    ]);
    TestCerts {
        ca: p("ca.pem"),
        cert: p("server.pem"),
        key: p("server.key"),
    }
}
